"""The Keras 3 layers that hold a `tfrnn.keras` layer's variables where Keras looks for them.

Keras 3 trains, saves and exports Keras variables owned by layers, and finds them by
attribute: `keras.layers.LSTM` keeps its weights in its `cell` sublayer, so a `.weights.h5`
file has them under `layers/lstm/cell/vars/0..2`, and a stack's under
`cell/cells/<cell class in snake_case>/vars`. A `tfrnn.keras` layer mirrors that: its `cell`
is the Keras 3 cell itself, a `keras.layers.StackedRNNCells` of the cells, or — for a tfrnn or
`tf.Module` cell — a `CellWeights` layer named after the cell's class that owns the cell's
variables as Keras variables. Files then load both ways between a Keras 3 model and the same
model built with `tfrnn.keras` layers.

A Keras variable here wraps the cell's own `tf.Variable` (Keras 3's TensorFlow backend keeps a
`tf.Variable` it is given as its backing variable): the core keeps reading the variable it
created, and the optimizer's updates land in it. Wrapping after the cells were built (rather
than intercepting their creation) also covers `tf.Module` cells whose variables exist from
their `__init__`.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import keras
import tensorflow as tf

from tfrnn._keras_common import flavours
from tfrnn._keras_common import weights as keras_weights
from tfrnn.keras import keras_internals
from tfrnn.stacked_cells import StackedRNNCells


def keras_variable(variable: tf.Variable, regularizer: Any = None) -> keras.Variable:
    """A Keras variable backed by `variable` itself (same storage), with its constraint."""
    with keras_internals.outside_stateless_scope():
        wrapped = keras.Variable(
            initializer=variable,
            dtype=variable.dtype.name,
            trainable=variable.trainable,
            name=keras_weights.short_name(variable),
        )
    if getattr(wrapped, "_value", None) is not variable:
        raise RuntimeError(
            f"Keras {keras.__version__} did not keep the tf.Variable {variable.name} as the "
            "backing variable of a Keras variable; tfrnn.keras needs a Keras 3 release whose "
            "TensorFlow backend does (3.5 to 3.15 do)"
        )
    wrapped.constraint = getattr(variable, "constraint", None)
    wrapped.regularizer = regularizer
    return wrapped


class CellWeights(keras.layers.Layer):
    """Owns a tfrnn or `tf.Module` cell's variables as Keras variables (see the module doc).

    It is also a cell (it forwards `call`, `state_size` and `output_size`, and reads any other
    public attribute through to the cell: `layer.cell.units`), though `tfrnn.keras` layers
    run the wrapped cell itself. `weights` are the cell's, trainable first, each in the
    order the cell lists them (`kernel`, `recurrent_kernel`, `bias` for built-in cells).
    """

    def __init__(self, cell: Any, **kwargs):
        super().__init__(**kwargs)
        self._wrapped = cell
        # Set untracked: plain values, and attribute forwarding (below) must not see them
        # as already set.
        object.__setattr__(self, "state_size", cell.state_size)
        object.__setattr__(self, "output_size", getattr(cell, "output_size", None))

    @property
    def wrapped(self) -> Any:
        """The tfrnn or `tf.Module` cell whose variables this layer holds."""
        return self._wrapped

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails; private names never forward (Keras probes them).
        if name.startswith("_") or "_wrapped" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self.__dict__["_wrapped"], name)

    def call(self, inputs, states, **kwargs):
        return self._wrapped(inputs, states, **kwargs)

    def load_own_variables(self, store) -> None:
        """Loads the cell's weights (`.keras`, `.weights.h5`) after checking them all.

        Raises:
          ValueError: for a count or shape that differs (nothing changes then).
        """
        values = [store[str(index)] for index in range(len(store.keys()))]
        variables = self._trainable_variables + self._non_trainable_variables
        keras_weights.assign_checked(variables, values, "saved weights", self.name)

    def adopt_variables(self) -> None:
        """Wraps the cell's variables as this layer's Keras variables (once, after building)."""
        if self.built:
            return
        trainable, non_trainable = keras_weights.variables_of(self._wrapped)
        regularizers = {id(v): fn for v, fn in getattr(self._wrapped, "_regularizers", ())}
        with keras.name_scope(self.name, caller=self):
            wrapped = [keras_variable(v, regularizers.get(id(v))) for v in trainable + non_trainable]
        self.cell_variables = wrapped  # tracked in this order: Keras' weight order
        for variable in wrapped:
            name = variable.name
            if name.isidentifier() and not hasattr(type(self), name) and name not in self.__dict__:
                setattr(self, name, variable)  # `layer.cell.kernel`, as on Keras' cells
        self.built = True


@functools.lru_cache(maxsize=None)
def _weights_class(cell_class_name: str) -> type:
    # Keras names a stacked cell's weights after its class (`cells/lstm_cell/vars/0`).
    return type(cell_class_name, (CellWeights,), {"__module__": __name__})


def cell_weights(cell: Any) -> CellWeights:
    """A `CellWeights` for `cell`, of a class named like the cell's (`LSTMCell`)."""
    name = getattr(cell, "name", None)
    return _weights_class(type(cell).__name__)(cell, name=name if isinstance(name, str) else None)


def _is_keras_layer(cell: Any) -> bool:
    return isinstance(cell, keras.layers.Layer)


def split_cell(cell: Any) -> tuple[Any, keras.layers.Layer]:
    """`(the cell the core runs, the Keras layer that holds its weights)` for a layer's `cell`.

    A list of cells (or a `keras.layers.StackedRNNCells`, or a `tfrnn.StackedRNNCells`) is
    stacked; the core runs the cells themselves, Keras 3 cells included.
    """
    if isinstance(cell, keras.layers.StackedRNNCells):
        cell = list(cell.cells)
    if isinstance(cell, (list, tuple)):
        cells = list(cell)
        holders = [_holder(c, f"cell[{i}]") for i, c in enumerate(cells)]
        return cells, keras.layers.StackedRNNCells(holders)
    if isinstance(cell, StackedRNNCells):
        cells = keras_weights.flat_cells(cell)
        holders = [_holder(c, f"cell.cells[{i}]") for i, c in enumerate(cells)]
        return cell, keras.layers.StackedRNNCells(holders)
    return cell, _holder(cell, "cell")


def _holder(cell: Any, argument: str) -> keras.layers.Layer:
    flavours.check_cell(cell, argument, "keras")
    if isinstance(cell, (list, tuple, StackedRNNCells)):
        raise TypeError(
            f"stacked cells inside stacked cells are not supported by tfrnn.keras, got a "
            f"{type(cell).__name__} among the cells; pass one flat list of cells"
        )
    return cell if _is_keras_layer(cell) else cell_weights(cell)


def adopt_variables(layer: keras.layers.Layer) -> None:
    """Wraps the variables of every `CellWeights` under `layer` (the `cell` of an RNN layer)."""
    if isinstance(layer, CellWeights):
        layer.adopt_variables()
    elif isinstance(layer, keras.layers.StackedRNNCells):
        for cell in layer.cells:
            adopt_variables(cell)
        layer.built = True


class StateWeights(keras.layers.Layer):
    """Holds a stateful layer's states as non-trainable Keras variables.

    Keras 3's own RNN layers keep their states outside Keras' tracking: not in `weights` and
    not saved. tfrnn keeps them out of `weights` too (the RNN layer filters them), so weight
    lists match Keras', but in `variables`, so `model.export` and checkpoints include them,
    and saves them under this layer's own path (`layers/lstm/state_weights/vars/0`), which
    Keras' layers never read. A file without states (saved by Keras' own layers) loads and
    leaves the states as they are.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.state_variables = []

    def adopt(self, variables: Sequence[tf.Variable]) -> None:
        """Wraps the core's state variables (once they exist)."""
        if self.state_variables or not variables:
            return
        with keras.name_scope(self.name, caller=self):
            self.state_variables = [keras_variable(v) for v in variables]
        self.built = True

    def load_own_variables(self, store) -> None:
        """Loads saved states; a file with none (Keras' own layers) changes nothing."""
        if not len(store.keys()):
            return
        values = [store[str(index)] for index in range(len(store.keys()))]
        keras_weights.assign_checked(self.state_variables, values, "saved states", self.name)

