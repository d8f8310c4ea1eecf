"""`layer.cell` of a `tfrnn.tf_keras` layer: the cell as the tf-keras layer tf-keras code expects.

tf-keras code treats a recurrent layer's `cell` as a Keras layer — `layer.cell.trainable`,
`trainable_weights`, `losses`, `state_size`, `kernel` — and tf-keras' saving reaches the
weights through it: object-graph checkpoints and SavedModels under
`layer_with_weights-0/cell/kernel` (`cell/cells/0/kernel` for stacked cells), `.keras` files
under `layers/lstm/cell/vars/0`. A cell that is a tf-keras layer already is its own `cell`;
for any other cell (tfrnn's cells and stacks, `tf.Module`s, plain objects, Keras 3 layers) a
`CellLayer` stands in: it holds the cell's variables as attributes named as the cell names
them, in the cell's order, runs the cell when called, and reads through to the cell for
anything else (`layer.cell.units`). The variables stay the cell's: the core computes with
them, this layer only presents them.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Optional

import tensorflow as tf
import tf_keras

from tfrnn._core.cell_adapter import CellAdapter
from tfrnn._core.variables import unwrap
from tfrnn._keras_common import cell_config
from tfrnn._keras_common import state_structure
from tfrnn._keras_common import weights as keras_weights
from tfrnn.gru_cell import GRUCell as CoreGRUCell
from tfrnn.lstm_cell import LSTMCell as CoreLSTMCell
from tfrnn.simple_rnn_cell import SimpleRNNCell as CoreSimpleRNNCell
from tfrnn.stacked_cells import StackedRNNCells as CoreStackedRNNCells

_register = tf_keras.saving.register_keras_serializable(package="tfrnn")


@_register
class CellLayer(tf_keras.layers.Layer):
    """A tf-keras layer presenting `cell` (any cell `tfrnn.RNN` takes) to tf-keras.

    >>> layer = tfrnn.tf_keras.LSTM(4, name="encoder")
    >>> _ = layer(tf.ones([2, 3, 5]))
    >>> type(layer.cell).__name__, layer.cell.kernel.name, layer.cell.trainable
    ('LSTMCell', 'encoder/lstm_cell/kernel:0', True)

    Args:
      cell: the cell.
      **kwargs: `tf_keras.layers.Layer` arguments (`trainable`, `name`); the name defaults
        to the cell's.
    """

    def __init__(self, cell: Any, **kwargs):
        kwargs.setdefault("name", getattr(cell, "name", None) or None)
        kwargs.setdefault("dtype", _variable_dtype(cell))
        super().__init__(**kwargs)
        # Untracked: the checkpointed children are the variables this layer names itself.
        object.__setattr__(self, "_wrapped", cell)
        object.__setattr__(self, "_naming", False)
        self._regularization_added = False

    @property
    def wrapped(self) -> Any:
        """The cell this layer presents."""
        return self._wrapped

    @property
    def state_size(self) -> Any:
        return state_structure.keras_state_size(self._wrapped)

    @property
    def output_size(self) -> Any:
        return getattr(self._wrapped, "output_size", None)

    def __getattr__(self, name: str) -> Any:
        # Only reached when the layer itself has no such attribute: the cell's arguments.
        wrapped = self.__dict__.get("_wrapped")
        if wrapped is None or name.startswith("_") or self.__dict__.get("_naming"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(wrapped, name)

    # -- the cell's variables -----------------------------------------------------------------

    def track_weights(self) -> None:
        """Takes the cell's variables (once the core has built it) as this layer's weights."""
        trainable, non_trainable = keras_weights.variables_of(self._wrapped)
        names = _attribute_names(self._wrapped)
        known = {id(v) for v in self._trainable_weights + self._non_trainable_weights}
        with self._naming_variables():
            for variable in trainable + non_trainable:
                if id(variable) not in known:
                    setattr(self, self._free_name(names.get(id(variable)), variable), variable)
        regularized = getattr(self._wrapped, "regularization_losses", None)
        if callable(regularized) and not self._regularization_added:
            self._regularization_added = True
            for index in range(len(regularized())):
                # Callables: Keras re-evaluates them at every step, like weight regularizers.
                self.add_loss(functools.partial(_regularization_term, self._wrapped, index))
        self.built = True

    def track_extra(self, variables: list) -> None:
        """Takes variables the core trains that no cell lists (cells of unusual kinds)."""
        with self._naming_variables():
            for variable in variables:
                setattr(self, self._free_name(None, variable), variable)

    @contextlib.contextmanager
    def _naming_variables(self):
        # While variables become attributes, Keras must not read the cell's through __getattr__.
        object.__setattr__(self, "_naming", True)
        try:
            yield
        finally:
            object.__setattr__(self, "_naming", False)

    def _free_name(self, name: Optional[str], variable: tf.Variable) -> str:
        name = name or keras_weights.short_name(variable)
        candidate, index = name, 1
        while hasattr(type(self), candidate) or candidate in self.__dict__:
            candidate, index = f"{name}_{index}", index + 1
        return candidate

    def load_own_variables(self, store) -> None:
        """Loads the cell's weights (`.keras` format), checked; nothing changes on error."""
        variables = self._trainable_weights + self._non_trainable_weights
        values = [store[str(i)] for i in range(len(store.keys()))]
        keras_weights.assign_checked(variables, values, "saved weights", self.name)

    # -- running ---------------------------------------------------------------------------------

    def build(self, input_shape: Any) -> None:
        """Builds the cell for steps of `input_shape` (`[batch, features]`)."""
        CellAdapter(self._wrapped, "cell").build(tf.TensorShape(input_shape))
        self.track_weights()

    def call(self, inputs, states, training=None, constants=None):
        """One step: `(output, new_states)`, the states nested as `state_size` nests them."""
        adapter = CellAdapter(self._wrapped, "cell")
        output, new_states = adapter.call_step(
            inputs,
            tf.nest.flatten(states),
            constants=tf.nest.flatten(constants) if constants is not None else None,
            training=False if training is None else training,
        )
        if not tf.nest.is_nested(states):
            return output, new_states[0]  # a bare state in, a bare state out (tf-keras)
        return output, state_structure.pack_states(self._wrapped, new_states)

    def get_initial_state(self, inputs=None, batch_size=None, dtype=None) -> Any:
        """The cell's initial states, nested as `state_size` nests them (tf-keras' signature;
        a single state is one tensor)."""
        if batch_size is None:
            batch_size = tf.shape(inputs)[0]
        dtype = tf.as_dtype(dtype or (inputs.dtype if inputs is not None else self.dtype))
        flat = CellAdapter(self._wrapped, "cell").initial_state(batch_size, dtype)
        return state_structure.nest_states(self._wrapped, flat)

    # -- serialization ---------------------------------------------------------------------------

    def get_config(self) -> dict:
        return {**super().get_config(), "cell": cell_config.serialize_cell(self._wrapped, tf_keras)}

    @classmethod
    def from_config(cls, config: dict, custom_objects: Optional[dict] = None) -> "CellLayer":
        config = dict(config)
        cell = cell_config.deserialize_cell(config.pop("cell"), tf_keras, custom_objects)
        return view_of(cell, **config)


# Named as tf-keras' cells: `.keras` files name a stack's cells after their class
# (`cell/cells/lstm_cell/vars/0`).


@_register
class SimpleRNNCell(CellLayer):
    """`CellLayer` of a `tfrnn.SimpleRNNCell`."""


@_register
class LSTMCell(CellLayer):
    """`CellLayer` of a `tfrnn.LSTMCell`."""


@_register
class GRUCell(CellLayer):
    """`CellLayer` of a `tfrnn.GRUCell`."""


@_register
class StackedRNNCells(CellLayer):
    """`CellLayer` of a `tfrnn.StackedRNNCells`: its `cells` are the cells' layers."""

    def __init__(self, cell: Any, **kwargs):
        super().__init__(cell, **kwargs)
        self.cells = [view_of(c) for c in cell.cells]

    @property
    def output_size(self) -> Any:
        last = self.cells[-1]
        size = getattr(last, "output_size", None)
        return size if size is not None else tf.nest.flatten(last.state_size)[0]

    def track_weights(self) -> None:
        for cell in self.cells:
            if isinstance(cell, CellLayer):
                cell.track_weights()
        self.built = True

    def load_own_variables(self, store) -> None:
        # The weights are the cells' (tf-keras' StackedRNNCells holds none of its own).
        keras_weights.assign_checked([], [store[k] for k in store.keys()], "saved weights", self.name)


_VIEWS = {
    CoreSimpleRNNCell: SimpleRNNCell,
    CoreLSTMCell: LSTMCell,
    CoreGRUCell: GRUCell,
    CoreStackedRNNCells: StackedRNNCells,
}


def view_of(cell: Any, **kwargs) -> tf_keras.layers.Layer:
    """`cell` itself if it is a tf-keras layer, else its `CellLayer`."""
    if isinstance(cell, tf_keras.layers.Layer):
        return cell
    view = _VIEWS.get(type(cell), CellLayer)
    if isinstance(cell, CoreStackedRNNCells):
        view = StackedRNNCells
    return view(cell, **kwargs)


def views_in(layer: Any) -> list:
    """`layer` and every layer under it that presents a cell: `CellLayer`s and Keras cells."""
    found = [layer]
    for cell in getattr(layer, "cells", None) or []:
        found += views_in(cell)
    return found


def _attribute_names(cell: Any) -> dict:
    """`{id(variable): attribute}` for the variables `cell` keeps as public attributes."""
    names = {}
    for name, value in vars(cell).items() if hasattr(cell, "__dict__") else []:
        if not name.startswith("_") and isinstance(unwrap(value), tf.Variable):
            names.setdefault(id(unwrap(value)), name)
    return names


def _variable_dtype(cell: Any) -> Optional[str]:
    dtype = getattr(cell, "variable_dtype", None) or getattr(cell, "dtype", None)
    try:
        dtype = tf.as_dtype(dtype)
    except TypeError:
        return None
    return dtype.name if dtype.is_floating else None


def _regularization_term(cell: Any, index: int) -> tf.Tensor:
    return cell.regularization_losses()[index]

