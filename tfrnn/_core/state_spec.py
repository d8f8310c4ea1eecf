"""Reading a cell's `state_size` into flat per-state shapes, and describing tensors in errors.

Keras lets `state_size` be an int, a `TensorShape`, or a list/tuple with one entry per state.
tfrnn reads it as follows (the Keras docs leave the nesting rule open):

* an int `n` or a `TensorShape` at the top level is one state of shape `[batch, n]` or
  `[batch, *shape]`;
* a list/tuple (a namedtuple too) at the top level has one entry per state; each entry is an
  int, a `TensorShape`, or a list/tuple of ints for a high-dimensional state; an empty
  entry (`()`, `[]`) is no state, so `()` or `((), [], ())` is a stateless cell.

So `[64, 64]` is two states (an LSTM's h and c), and `[[8, 8, 3]]` is one state of shape
`[batch, 8, 8, 3]`. Stacked cells keep one such entry per cell (see `StackedRNNCells`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _entry_shape(entry: Any, owner: str) -> tf.TensorShape:
    """One state's per-example shape from one `state_size` entry."""
    if isinstance(entry, tf.TensorShape):
        shape = entry
    elif _is_int(entry):
        shape = tf.TensorShape([int(entry)])
    elif isinstance(entry, (list, tuple)) and entry and all(_is_int(d) for d in entry):
        shape = tf.TensorShape([int(d) for d in entry])
    else:
        raise TypeError(
            f"{owner}.state_size entries must be an int, a TensorShape or a list of ints "
            f"(one high-dimensional state), got {entry!r}"
        )
    if not shape.is_fully_defined() or any(d <= 0 for d in shape.as_list()):
        raise ValueError(
            f"{owner}.state_size must give positive, fully known sizes, got {entry!r}"
        )
    return shape


def flat_state_shapes(state_size: Any, owner: str = "cell") -> list[tf.TensorShape]:
    """The per-example shape of each state, in the cell's order (batch dimension excluded)."""
    if isinstance(state_size, (list, tuple)):
        return [_entry_shape(e, owner) for e in state_size if not _is_empty(e)]
    return [_entry_shape(state_size, owner)]


def _is_empty(entry: Any) -> bool:
    """`()`, `[]`, or a nest of nothing but those: no state."""
    return isinstance(entry, (list, tuple)) and all(_is_empty(e) for e in entry)


def output_shapes(output_size: Any, owner: str = "cell") -> Any:
    """The per-example output shape(s) from `output_size`, in its nest.

    An int or a `TensorShape` is one output; a tuple, list or dict of them is a nest of
    outputs (a cell whose `call` returns that nest), as tf-keras reads `output_size`.
    """
    def leaf(size):
        return _entry_shape(size, f"{owner}.output_size")

    if isinstance(output_size, (list, tuple, dict)) and not isinstance(output_size, tf.TensorShape):
        return tf.nest.map_structure(leaf, output_size)
    return leaf(output_size)


def zeros(shapes: Sequence[tf.TensorShape], batch_size: Any, dtype: tf.DType) -> list[tf.Tensor]:
    """Zero states `[batch_size, *shape]` for `shapes`; a static batch keeps them static.

    TFLite's builtin ops need the static shapes a Python int batch gives.
    """
    if isinstance(batch_size, (int, np.integer)):
        return [tf.zeros([int(batch_size)] + shape.as_list(), dtype) for shape in shapes]
    return [tf.zeros(tf.concat([[batch_size], shape.as_list()], 0), dtype) for shape in shapes]


def describe(value: Any) -> str:
    """A short description of a tensor or a list of tensors for error messages."""
    if isinstance(value, (list, tuple)):
        if not value:
            return "0 tensors"
        shapes = ", ".join(describe_shape(v) for v in tf.nest.flatten(value))
        count = len(tf.nest.flatten(value))
        noun = "tensor" if count == 1 else "tensors"
        return f"{count} {noun} of shape {shapes}"
    return f"1 tensor of shape {describe_shape(value)}"


def describe_shape(value: Any) -> str:
    """`[4, 32]` for a tensor or array; unknown dimensions print as `None`."""
    shape = getattr(value, "shape", None)
    if shape is None:
        return type(value).__name__
    dims = tf.TensorShape(shape).as_list() if tf.TensorShape(shape).rank is not None else None
    if dims is None:
        return "<unknown rank>"
    return "[" + ", ".join("None" if d is None else str(d) for d in dims) + "]"


def format_state_shapes(shapes: Sequence[tf.TensorShape], batch: Any = "batch") -> str:
    """`[batch, 64], [batch, 64]` for the expected state shapes."""
    parts = []
    for shape in shapes:
        parts.append("[" + ", ".join([str(batch)] + [str(d) for d in shape.as_list()]) + "]")
    return ", ".join(parts)
