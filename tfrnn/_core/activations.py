"""Activation functions by Keras name, so cells accept `activation="tanh"` like Keras cells do."""

from __future__ import annotations

from typing import Callable, Union

import tensorflow as tf

Activation = Union[str, Callable[[tf.Tensor], tf.Tensor], None]


def _hard_sigmoid(x: tf.Tensor) -> tf.Tensor:
    # tf-keras' definition (Keras 3 uses relu6(x + 3) / 6); tfrnn copies weights from tf-keras.
    return tf.clip_by_value(x * 0.2 + 0.5, 0.0, 1.0)


def _linear(x: tf.Tensor) -> tf.Tensor:
    return x


_BY_NAME: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "tanh": tf.tanh,
    "sigmoid": tf.sigmoid,
    "hard_sigmoid": _hard_sigmoid,
    "relu": tf.nn.relu,
    "relu6": tf.nn.relu6,
    "elu": tf.nn.elu,
    "selu": tf.nn.selu,
    "softplus": tf.nn.softplus,
    "softsign": tf.nn.softsign,
    "swish": tf.nn.silu,
    "silu": tf.nn.silu,
    "gelu": lambda x: tf.nn.gelu(x, approximate=False),
    "exponential": tf.exp,
    "linear": _linear,
}


def get(identifier: Activation) -> Callable[[tf.Tensor], tf.Tensor]:
    """The activation callable for a Keras name, a callable, or `None` (linear)."""
    if identifier is None:
        return _linear
    if isinstance(identifier, str):
        try:
            return _BY_NAME[identifier]
        except KeyError:
            raise ValueError(
                f"activation must be one of {sorted(_BY_NAME)} or a callable, got {identifier!r}"
            ) from None
    if callable(identifier):
        return identifier
    raise TypeError(
        f"activation must be a name, a callable or None, got {type(identifier).__name__}"
    )


def name_of(identifier: Activation) -> Activation:
    """The serializable form: the Keras name where there is one, else the callable itself."""
    if identifier is None or isinstance(identifier, str):
        return "linear" if identifier is None else identifier
    for name, fn in _BY_NAME.items():
        if fn is identifier:
            return name
    return getattr(identifier, "__name__", identifier)
