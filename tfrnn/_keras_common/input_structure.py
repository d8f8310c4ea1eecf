"""How a Keras recurrent layer's inputs and outputs nest, for cells with nested inputs/outputs.

Keras passes a layer `inputs` (one tensor, or a tuple, namedtuple or dict nest of them for a
cell with nested inputs), or the list `[inputs, *initial_state, *constants]`: a list means
the latter, a tuple a nest. `build` gets the same structure of shapes. Its result is the
output (the cell's output nest; a tuple or list of outputs as a list) and, with
`return_state`, the states after it: `[*outputs, *states]`, as tf-keras' `to_list(output) +
states`. This module knows nothing of Keras (the adapters import it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf


def is_shape(value: Any) -> bool:
    """Whether `value` is one shape (a `TensorShape`, or a list/tuple of ints and `None`s)."""
    if isinstance(value, tf.TensorShape):
        return True
    return isinstance(value, (list, tuple)) and not hasattr(value, "_fields") and all(
        d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool)) for d in value
    )


def shape_nest(value: Any) -> Any:
    """`value` with `TensorShape` leaves (a shape, or a tuple, list, namedtuple or dict nest)."""
    if is_shape(value):
        return tf.TensorShape(value)
    if isinstance(value, dict):
        return type(value)((k, shape_nest(v)) for k, v in value.items())
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(shape_nest(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(shape_nest(v) for v in value)
    return tf.TensorShape(value)


def sequence_shapes(input_shape: Any) -> Any:
    """The shape (nest) of the sequence in a `build`/`compute_output_shape` argument."""
    if isinstance(input_shape, list) and input_shape and not is_shape(input_shape):
        input_shape = input_shape[0]  # [inputs, *initial_state, *constants]
    return shape_nest(input_shape)


def first(nest: Any) -> Any:
    """The first leaf of a nest (its batch and time are every leaf's)."""
    return tf.nest.flatten(nest)[0]


def layer_outputs(output: Any, states: list, return_state: bool) -> Any:
    """The layer's result: `output`, or `[*outputs, *states]` with `return_state`."""
    if isinstance(output, tuple) and not hasattr(output, "_fields"):
        output = list(output)  # a cell's outputs, as tf-keras returns them
    if not return_state:
        return output
    return (output if isinstance(output, list) else [output]) + list(states)
