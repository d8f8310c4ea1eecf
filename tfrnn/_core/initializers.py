"""Weight initializers by Keras name, drawn from a seedable generator.

Values follow the Keras definitions (so statistics match), not Keras' random streams: weights
that must match a Keras model exactly are copied, not re-drawn.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Union

import tensorflow as tf

Initializer = Union[str, Callable[..., Any]]


def _fans(shape: tf.TensorShape) -> tuple[int, int]:
    dims = shape.as_list()
    if len(dims) < 1:
        return 1, 1
    if len(dims) == 1:
        return dims[0], dims[0]
    receptive = math.prod(dims[:-2]) if len(dims) > 2 else 1
    return dims[-2] * receptive, dims[-1] * receptive


def _variance_scaling(scale: float, mode: str, distribution: str):
    def init(shape, dtype, rng: tf.random.Generator):
        fan_in, fan_out = _fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
        variance = scale / max(1.0, fan)
        if distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return rng.uniform(shape, -limit, limit, dtype=dtype)
        # Keras' truncated normal at 2 stddev, corrected for the truncation.
        stddev = math.sqrt(variance) / 0.87962566103423978
        return rng.truncated_normal(shape, stddev=stddev, dtype=dtype)

    return init


def _orthogonal(shape, dtype, rng: tf.random.Generator, gain: float = 1.0):
    dims = shape.as_list()
    rows = math.prod(dims[:-1])
    cols = dims[-1]
    flat = rng.normal((max(rows, cols), min(rows, cols)), dtype=dtype)
    q, r = tf.linalg.qr(flat, full_matrices=False)
    q = q * tf.sign(tf.linalg.diag_part(r))
    if rows < cols:
        q = tf.transpose(q)
    return gain * tf.reshape(q, shape)


_BY_NAME = {
    "zeros": lambda shape, dtype, rng: tf.zeros(shape, dtype),
    "ones": lambda shape, dtype, rng: tf.ones(shape, dtype),
    "uniform": lambda shape, dtype, rng: rng.uniform(shape, -0.05, 0.05, dtype=dtype),
    "random_uniform": lambda shape, dtype, rng: rng.uniform(shape, -0.05, 0.05, dtype=dtype),
    "random_normal": lambda shape, dtype, rng: rng.normal(shape, stddev=0.05, dtype=dtype),
    "normal": lambda shape, dtype, rng: rng.normal(shape, stddev=0.05, dtype=dtype),
    "truncated_normal": lambda shape, dtype, rng: rng.truncated_normal(
        shape, stddev=0.05, dtype=dtype
    ),
    "glorot_uniform": _variance_scaling(1.0, "fan_avg", "uniform"),
    "glorot_normal": _variance_scaling(1.0, "fan_avg", "normal"),
    "he_uniform": _variance_scaling(2.0, "fan_in", "uniform"),
    "he_normal": _variance_scaling(2.0, "fan_in", "normal"),
    "lecun_uniform": _variance_scaling(1.0, "fan_in", "uniform"),
    "lecun_normal": _variance_scaling(1.0, "fan_in", "normal"),
    "orthogonal": _orthogonal,
    "identity": lambda shape, dtype, rng: tf.eye(*shape.as_list(), dtype=dtype),
}


def check(identifier: Initializer, argument: str) -> Initializer:
    """Validates an initializer argument at construction time."""
    if isinstance(identifier, str):
        if identifier not in _BY_NAME:
            raise ValueError(
                f"{argument} must be one of {sorted(_BY_NAME)} or a callable "
                f"(shape, dtype) -> tensor, got {identifier!r}"
            )
        return identifier
    if callable(identifier):
        return identifier
    raise TypeError(
        f"{argument} must be a Keras initializer name or a callable, "
        f"got {type(identifier).__name__}"
    )


def initial_value(
    identifier: Initializer, shape: Any, dtype: tf.DType, rng: tf.random.Generator
) -> tf.Tensor:
    """A tensor of `shape` drawn from the named initializer or produced by a callable."""
    shape = tf.TensorShape(shape)
    if isinstance(identifier, str):
        # 16-bit values are drawn in float32 and rounded: QR and the generators' normal
        # draws have no bfloat16/float16 kernels.
        wide = dtype if dtype.size >= 4 else tf.float32
        return tf.cast(_BY_NAME[identifier](shape, wide, rng), dtype)
    # Keras initializer objects and plain functions both take (shape, dtype=...).
    return tf.convert_to_tensor(identifier(shape, dtype=dtype), dtype=dtype)
