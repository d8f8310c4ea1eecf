"""What every time loop does to its tensors: time-major transposes and masked steps."""

from __future__ import annotations

from typing import Optional

import tensorflow as tf


def time_major(tensor: tf.Tensor) -> tf.Tensor:
    """`[batch, time, ...]` <-> `[time, batch, ...]` (the transpose is its own inverse)."""
    return tf.transpose(tensor, [1, 0] + list(range(2, tensor.shape.rank)))


def where_unmasked(mask_t: Optional[tf.Tensor], new: tf.Tensor, old: tf.Tensor) -> tf.Tensor:
    """`new` where a batch entry's step is unmasked, else `old`.

    Args:
      mask_t: `[batch]` bool, the step's mask; `None` means every entry is unmasked.
      new: `[batch, ...]`.
      old: `[batch, ...]`, the same shape.
    """
    if mask_t is None:
        return new
    result = tf.where(tf.reshape(mask_t, [-1] + [1] * (new.shape.rank - 1)), new, old)
    # A mask of unknown batch must not make a state of known shape unknown (loop invariants).
    result.set_shape(new.shape.merge_with(old.shape))
    return result
