"""`LengthBuckets`: pad the time axis to a few fixed lengths, so XLA compiles a few times.

XLA compiles a function once per distinct input shape. A server fed sequences of many lengths
would compile without end (tf#62198). Padding every sequence at its end to the next bucket
length and masking the padding gives results identical to the unpadded run (masked steps
carry the states and the output over, see `tfrnn.unroll`) while XLA only ever sees the bucket
lengths. With the default buckets (powers of two from 8), the lengths 1 to 500 map to 7 shapes.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import tensorflow as tf

BucketsArg = Union[None, bool, Sequence[int], "LengthBuckets"]


class LengthBuckets:
    """Bucket lengths for the time axis: explicit ones, or powers of two from `minimum`.

    >>> buckets = tfrnn.LengthBuckets()
    >>> [buckets.bucket(n) for n in (1, 9, 100, 500)]
    [8, 16, 128, 512]

    Args:
      boundaries: increasing bucket lengths; a sequence longer than the last one is an
        error. `None`: powers of two from `minimum`, without an upper end.
      minimum: the smallest bucket when `boundaries` is `None`.
    """

    def __init__(self, boundaries: Optional[Sequence[int]] = None, minimum: int = 8):
        if boundaries is not None:
            boundaries = [int(b) for b in boundaries]
            if not boundaries or any(b <= 0 for b in boundaries) or sorted(set(boundaries)) != boundaries:
                raise ValueError(
                    f"length_buckets must be increasing positive lengths, got {boundaries}"
                )
        if minimum <= 0:
            raise ValueError(f"minimum must be positive, got {minimum}")
        self.boundaries = boundaries
        self.minimum = int(minimum)

    def bucket(self, length: int) -> int:
        """The bucket for a static length."""
        if self.boundaries is None:
            bucket = self.minimum
            while bucket < length:
                bucket *= 2
            return bucket
        for boundary in self.boundaries:
            if boundary >= length:
                return boundary
        raise ValueError(
            f"inputs have {length} timesteps, more than the largest length bucket "
            f"{self.boundaries[-1]}; add a larger bucket to length_buckets"
        )

    def _dynamic_bucket(self, length: tf.Tensor) -> tf.Tensor:
        if self.boundaries is None:
            exponent = tf.math.ceil(
                tf.math.log(tf.cast(tf.maximum(length, self.minimum), tf.float64) / self.minimum)
                / tf.math.log(tf.constant(2.0, tf.float64))
            )
            return self.minimum * tf.cast(2.0 ** exponent, tf.int32)
        boundaries = tf.constant(self.boundaries, tf.int32)
        index = tf.searchsorted(boundaries, tf.reshape(length, [1]), side="left")[0]
        tf.debugging.assert_less(
            index,
            len(self.boundaries),
            message=f"more timesteps than the largest length bucket {self.boundaries[-1]}",
        )
        return tf.gather(boundaries, tf.minimum(index, len(self.boundaries) - 1))

    def pad(
        self, inputs: tf.Tensor, mask: Optional[tf.Tensor]
    ) -> tuple[tf.Tensor, tf.Tensor, Union[int, tf.Tensor]]:
        """Pads `inputs` `[batch, time, ...]` at the end of time to its bucket.

        Returns `(padded inputs, padded mask [batch, bucket] bool, original length)`; the
        mask is `False` on the padding and keeps `mask` (or `True`) on the real steps.
        """
        length = inputs.shape[1]
        if length is not None:
            extra = self.bucket(length) - length
        else:
            length = tf.shape(inputs)[1]
            extra = self._dynamic_bucket(length) - length
        if mask is None:
            mask = tf.ones(tf.shape(inputs)[:2], tf.bool)
        paddings = [[0, 0], [0, extra]] + [[0, 0]] * (inputs.shape.rank - 2)
        padded = tf.pad(inputs, paddings)
        padded_mask = tf.pad(mask, [[0, 0], [0, extra]], constant_values=False)
        return padded, padded_mask, length

    @staticmethod
    def crop(sequence: tf.Tensor, length: Union[int, tf.Tensor], go_backwards: bool) -> tf.Tensor:
        """The outputs of the real steps from a padded run's output sequence.

        Processing goes forwards (padding last) or backwards (padding first), and the
        sequence is in processing order, as Keras returns it.
        """
        if go_backwards:
            return sequence[:, tf.shape(sequence)[1] - length :]
        return sequence[:, :length]


def as_buckets(value: BucketsArg) -> Optional[LengthBuckets]:
    """The `length_buckets` argument of `RNN`: `None`/`False`, `True`, lengths, or buckets."""
    if value is None or value is False:
        return None
    if value is True:
        return LengthBuckets()
    if isinstance(value, LengthBuckets):
        return value
    if isinstance(value, (list, tuple)):
        return LengthBuckets(value)
    raise TypeError(
        "length_buckets must be None, True, a list of increasing lengths or a LengthBuckets, "
        f"got {type(value).__name__}"
    )
