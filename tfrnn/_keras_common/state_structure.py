"""How Keras nests a cell's states, rebuilt from the core's flat list of states.

The core carries and returns states flat, in the cell's order (`[h1, c1, h2]` for an LSTM cell
under a GRU cell). Keras nests them like the cell's `state_size`: one entry per top-level
state, and one entry per cell of a stack, each nested like that cell's own states —
`return_state=True` gives `[output, [h1, c1], h2]` there, and `layer.states` is
`([h1, c1], h2)`. This module computes that nesting; it knows nothing of Keras (the adapters
import it) and reads cells duck-typed, as the core does.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(value, "_fields")


def _structure_of_size(size: Any, top: bool) -> Any:
    """One `None` per state of `size`; a list of ints below the top is one state's shape."""
    if size is None or _is_int(size) or isinstance(size, tf.TensorShape):
        return None
    if not top and isinstance(size, (list, tuple)) and size and all(_is_int(d) for d in size):
        return None  # the core's rule: one high-dimensional state (see _core.state_spec)
    if _is_namedtuple(size):
        return type(size)(*(_structure_of_size(s, False) for s in size))
    if isinstance(size, tuple):
        return tuple(_structure_of_size(s, False) for s in size)
    if isinstance(size, Sequence) and not isinstance(size, (str, bytes)):
        return [_structure_of_size(s, False) for s in size]
    return None


def state_structure(cell: Any) -> Any:
    """`cell`'s states as Keras nests them, with `None` for every state.

    A stack (anything with a list of `cells`) is a tuple with one entry per cell, in the
    order of its states (`reverse_state_order` reverses it, as tf-keras does).
    """
    cells = getattr(cell, "cells", None)
    if isinstance(cells, Sequence) and not isinstance(cells, (str, bytes)) and cells:
        entries = [state_structure(c) for c in cells]
        if getattr(cell, "reverse_state_order", False):
            entries = entries[::-1]
        return tuple(entries)
    return _structure_of_size(getattr(cell, "state_size", None), top=True)


def keras_state_size(cell: Any) -> Any:
    """`cell.state_size` as tf-keras reports it: a stack's is a tuple, one entry per cell."""
    cells = getattr(cell, "cells", None)
    if isinstance(cells, Sequence) and not isinstance(cells, (str, bytes)) and cells:
        sizes = [keras_state_size(c) for c in cells]
        return tuple(sizes[::-1] if getattr(cell, "reverse_state_order", False) else sizes)
    return cell.state_size


def nest_states(cell: Any, flat: Sequence[Any]) -> Any:
    """`flat` (one entry per state, in the core's order) nested as Keras nests `cell`'s states.

    A cell with one state of an int or `TensorShape` size gets that state itself, as a
    Keras cell's `get_initial_state` returns it. Where the nesting does not account for
    exactly `len(flat)` states (a cell whose `state_size` the core reads another way), the
    states stay a flat list.
    """
    flat = list(flat)
    structure = state_structure(cell)
    if len(tf.nest.flatten(structure)) != len(flat):
        return flat
    return tf.nest.pack_sequence_as(structure, flat)


def pack_states(cell: Any, flat: Sequence[Any]) -> Any:
    """The states of a recurrent layer (`layer.states`, after the output of `return_state`):
    `nest_states`, a single state in a list, as Keras' `RNN` layer gives it."""
    packed = nest_states(cell, flat)
    return packed if isinstance(packed, (list, tuple)) else [packed]
