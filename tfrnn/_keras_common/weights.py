"""The weight list of a `tfrnn.RNN` in Keras' order, and checked assignment to it.

tf-keras lists a recurrent layer's weights cell by cell (bottom cell first for stacked cells),
each cell in creation order (`kernel`, `recurrent_kernel`, `bias` for the built-in cells). The
Keras adapters (`tfrnn.keras`, `tfrnn.tf_keras`) present their core's variables the same way, so weight
lists copy one to one between a Keras layer and its tfrnn twin. This module knows nothing of Keras
(only the adapters import it); it reads cells duck-typed, as the core does.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from tfrnn._core import state_spec
from tfrnn._core.variables import unique, unwrap
from tfrnn.cell import RNNCell
from tfrnn.rnn import RNN
from tfrnn.stacked_cells import StackedRNNCells


def flat_cells(cell: Any) -> list:
    """The cells of `cell` bottom first (nested `StackedRNNCells` flattened)."""
    if isinstance(cell, StackedRNNCells):
        return [c for sub in cell.cells for c in flat_cells(sub)]
    return [cell]


def variables_of(cell: Any) -> tuple[list, list]:
    """`(trainable, non-trainable)` weights of one cell, in the order its kind lists them."""
    if isinstance(cell, RNNCell) and cell.weights:
        return [v for v in cell.weights if v.trainable], [v for v in cell.weights if not v.trainable]
    if hasattr(cell, "trainable_weights") and hasattr(cell, "non_trainable_weights"):
        trainable = [unwrap(v) for v in cell.trainable_weights]
        return trainable, [unwrap(v) for v in cell.non_trainable_weights]
    if isinstance(cell, tf.Module):
        # Integer variables are seed counters and generator states, not weights.
        non_trainable = [v for v in cell.non_trainable_variables if v.dtype.is_floating]
        return list(cell.trainable_variables), non_trainable
    return [], []


def cell_weights(rnn: RNN) -> tuple[list[tf.Variable], list[tf.Variable]]:
    """`(trainable, non-trainable)` weights of `rnn`'s cells in Keras' order (no states).

    Variables the core trains that no cell lists (cells of unusual kinds) come last.
    """
    trainable, non_trainable = [], []
    for cell in flat_cells(rnn.cell):
        cell_trainable, cell_non_trainable = variables_of(cell)
        trainable += cell_trainable
        non_trainable += cell_non_trainable
    known = {id(v) for v in trainable + non_trainable}
    trainable += [v for v in rnn.trainable_variables if id(v) not in known]
    return unique(trainable), unique(non_trainable)


def short_name(variable: tf.Variable) -> str:
    """`kernel` for `lstm_cell/kernel:0`."""
    return variable.name.split("/")[-1].split(":")[0]


def assign_checked(
    variables: Sequence[tf.Variable], values: Sequence[Any], argument: str, owner: str
) -> None:
    """Assigns `values` to `variables` after checking them all, so nothing changes on error.

    Raises:
      ValueError: naming `argument` and `owner`, with the expected and received shapes.
    """
    variables, values = list(variables), list(values)
    if len(values) != len(variables):
        expected = ", ".join(f"{short_name(v)} {v.shape.as_list()}" for v in variables)
        raise ValueError(
            f"{argument} of {owner} must be {len(variables)} arrays ({expected}), got "
            f"{state_spec.describe(values)}"
        )
    for index, (variable, value) in enumerate(zip(variables, values)):
        if tuple(np.shape(value)) != tuple(variable.shape.as_list()):
            raise ValueError(
                f"{argument}[{index}] of {owner} ({short_name(variable)}) must have shape "
                f"{variable.shape.as_list()}, got shape {list(np.shape(value))}"
            )
    for variable, value in zip(variables, values):
        variable.assign(tf.cast(value, variable.dtype))
