"""Per-sequence dropout masks drawn from an explicit seed.

Keras draws one dropout mask per sequence and reuses it at every timestep (variational
dropout). tfrnn does the same, but the masks are a pure function of a seed tensor: the compiled
backward pass can recompute the forward pass with exactly the masks the forward pass used, and
the same seed gives the same masks under XLA, in a plain graph and eagerly.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf


def dropout_masks(
    seed: tf.Tensor, shape: Any, rate: float, dtype: tf.DType, count: int = 1
) -> list[tf.Tensor]:
    """`count` independent inverted-dropout masks of `shape`.

    Each entry is 0 with probability `rate` and `1 / (1 - rate)` otherwise, like
    `tf.nn.dropout`, so that the expected value of `x * mask` is `x`.

    Args:
      seed: int32/int64 tensor of shape `[2]`.
      shape: shape of one mask, e.g. `[batch, features]`.
      rate: the probability of dropping a unit, in `[0, 1)`.
      dtype: the mask's dtype (the compute dtype of the tensor it multiplies).
      count: how many masks to draw (one per gate for Keras' per-gate dropout).
    """
    seed = tf.cast(seed, tf.int64)
    masks = []
    for index in range(count):
        stream = tf.random.experimental.stateless_fold_in(seed, index) if count > 1 else seed
        keep = tf.random.stateless_uniform(shape, stream, dtype=tf.float32) >= rate
        masks.append(tf.cast(keep, dtype) * tf.cast(1.0 / (1.0 - rate), dtype))
    return masks


def check_rate(rate: float, argument: str) -> float:
    """Validates a dropout rate at construction time."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise TypeError(f"{argument} must be a float in [0, 1), got {type(rate).__name__}")
    if not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"{argument} must be in [0, 1), got {rate}")
    return float(rate)


def seed_from(rng: tf.random.Generator) -> tf.Tensor:
    """A fresh `[2]` seed from a generator (advances it, so each sequence gets new masks)."""
    return rng.make_seeds(1)[:, 0]
