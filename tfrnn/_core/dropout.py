"""Per-sequence dropout masks drawn from an explicit seed, identical under XLA and without it.

Keras draws one dropout mask per sequence and reuses it at every timestep (variational
dropout). tfrnn does the same, but the masks are a pure function of a `[2]` int64 seed: the
compiled backward pass recomputes the forward pass with exactly the masks the forward pass
used, and a model gives the same masks with `jit_compile` on and off.

TensorFlow's stateless random ops do not give that: their Philox kernels produce different
numbers under XLA than on the plain CPU runtime for the same seed (and `auto_select` even
picks another algorithm). So the bits come from a small integer hash (Chris Wellons'
"lowbias32") of the seed and the element index, made only of uint32 xor, shift and multiply,
which every backend computes the same.
"""

from __future__ import annotations

import random
from typing import Any, Optional

import tensorflow as tf

_U32 = tf.uint32


def _mix(x: tf.Tensor) -> tf.Tensor:
    """lowbias32: a bijective uint32 hash with good avalanche."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, _U32)))
    x = x * tf.constant(0x7FEB352D, _U32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(15, _U32)))
    x = x * tf.constant(0x846CA68B, _U32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, _U32)))


def _key(seed: tf.Tensor) -> tf.Tensor:
    """One uint32 key from the four 32-bit words of a `[2]` int64 seed."""
    seed = tf.cast(seed, tf.int64)
    low = tf.cast(tf.bitwise.bitwise_and(seed, 0xFFFFFFFF), _U32)
    high = tf.cast(tf.bitwise.bitwise_and(tf.bitwise.right_shift(seed, 32), 0xFFFFFFFF), _U32)
    return _mix(low[0] + _mix(high[0] + _mix(low[1] + _mix(high[1]))))


def uniform(seed: tf.Tensor, shape: Any) -> tf.Tensor:
    """float32 values in `[0, 1)` of `shape`, a pure function of `seed` (`[2]` int64)."""
    key = _key(seed)
    count = tf.reduce_prod(tf.cast(shape, tf.int32))
    bits = _mix(_mix(tf.cast(tf.range(count), _U32) + key) + key)
    top24 = tf.bitwise.right_shift(bits, tf.constant(8, _U32))
    return tf.reshape(tf.cast(top24, tf.float32) * (1.0 / (1 << 24)), shape)


def fold_in(seed: tf.Tensor, index: int) -> tf.Tensor:
    """A new `[2]` int64 seed derived from `seed` and `index`."""
    return tf.stack([tf.cast(_key(seed), tf.int64), tf.constant(index + 1, tf.int64)])


def dropout_masks(
    seed: tf.Tensor, shape: Any, rate: float, dtype: tf.DType, count: int = 1
) -> list[tf.Tensor]:
    """`count` independent inverted-dropout masks of `shape`.

    Each entry is 0 with probability `rate` and `1 / (1 - rate)` otherwise, like
    `tf.nn.dropout`, so that the expected value of `x * mask` is `x`.

    Args:
      seed: `[2]` int tensor.
      shape: shape of one mask, e.g. `[batch, features]`.
      rate: the probability of dropping a unit, in `[0, 1)`.
      dtype: the mask's dtype (the compute dtype of the tensor it multiplies).
      count: how many masks to draw (one per gate for tf-keras' per-gate dropout).
    """
    masks = []
    for index in range(count):
        keep = uniform(fold_in(seed, index), shape) >= rate
        masks.append(tf.cast(keep, dtype) * tf.cast(1.0 / (1.0 - rate), dtype))
    return masks


def check_rate(rate: float, argument: str) -> float:
    """Validates a dropout rate at construction time."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise TypeError(f"{argument} must be a float in [0, 1), got {type(rate).__name__}")
    if not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"{argument} must be in [0, 1), got {rate}")
    return float(rate)


class SeedStream(tf.Module):
    """A stream of `[2]` seeds, one per call: a base seed and a counter variable.

    Reading the next seed increments the counter, so each sequence gets new masks; the
    counter is a variable, so the stream advances inside compiled functions and is saved
    with checkpoints.

    Args:
      seed: the base seed; `None` picks a random one.
    """

    def __init__(self, seed: Optional[int] = None, name: Optional[str] = None):
        super().__init__(name=name)
        self.base = int(seed) if seed is not None else random.SystemRandom().getrandbits(62)
        with tf.init_scope():
            self.counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="counter")

    def next(self) -> tf.Tensor:
        """The next seed (advances the stream)."""
        count = self.counter.assign_add(1)
        return tf.stack([tf.constant(self.base, tf.int64), tf.identity(count)])
