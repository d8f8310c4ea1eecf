"""Cells in Keras configs, and the Keras arguments of the namesake layers, for either Keras.

Both adapters describe a layer's cell in its config the same way: tfrnn's cells by name
(`{"module": "tfrnn", "class_name": "LSTMCell", "config": {...}}`), other cells as their
Keras' serialized objects. Each function takes the Keras module (`keras` or `tf_keras`) whose
serialization applies, so this module imports neither.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Callable, Collection, Optional

from tfrnn._core import activations as tfrnn_activations
from tfrnn._core import initializers as tfrnn_initializers
from tfrnn._keras_common import conv_lstm
from tfrnn.gru_cell import GRUCell
from tfrnn.lstm_cell import LSTMCell
from tfrnn.simple_rnn_cell import SimpleRNNCell
from tfrnn.stacked_cells import StackedRNNCells

BUILTIN_CELLS = {cls.__name__: cls for cls in (SimpleRNNCell, LSTMCell, GRUCell)}
CELL_NAMES = {SimpleRNNCell: "simple_rnn_cell", LSTMCell: "lstm_cell", GRUCell: "gru_cell"}
CELL_NAMES.update({cls: "conv_lstm_cell" for cls in conv_lstm.CELLS.values()})


def _serialize_value(value: Any, keras: ModuleType) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return keras.saving.serialize_keras_object(value)


def _deserialize_value(value: Any, keras: ModuleType, custom_objects: Optional[dict]) -> Any:
    if isinstance(value, dict) and "class_name" in value:
        return keras.saving.deserialize_keras_object(value, custom_objects=custom_objects)
    return value


def serialize_cell(cell: Any, keras: ModuleType) -> Any:
    """A JSON-able config of `cell`: tfrnn cells by name, other cells as `keras` objects.

    Raises:
      NotImplementedError: for a cell without `get_config` (Keras' signal for "no config").
    """
    if isinstance(cell, (list, tuple)):
        return [serialize_cell(c, keras) for c in cell]
    if isinstance(cell, StackedRNNCells):
        cells = [serialize_cell(c, keras) for c in cell.cells]
        return {"module": "tfrnn", "class_name": "StackedRNNCells", "config": {"cells": cells}}
    if type(cell) in BUILTIN_CELLS.values():
        config = {k: _serialize_value(v, keras) for k, v in cell.get_config().items()}
        return {"module": "tfrnn", "class_name": type(cell).__name__, "config": config}
    if not callable(getattr(cell, "get_config", None)):
        raise NotImplementedError(
            f"cell {type(cell).__name__} cannot be serialized: it has no get_config(); give it "
            "get_config()/from_config() and register it with "
            f"{keras.__name__}.saving.register_keras_serializable"
        )
    return keras.saving.serialize_keras_object(cell)


def deserialize_cell(config: Any, keras: ModuleType, custom_objects: Optional[dict] = None) -> Any:
    """The cell `serialize_cell` (or `keras` itself) described."""
    if isinstance(config, (list, tuple)):
        return [deserialize_cell(c, keras, custom_objects) for c in config]
    if isinstance(config, dict) and config.get("module") == "tfrnn":
        name, inner = config.get("class_name"), config.get("config", {})
        if name == "StackedRNNCells":
            return StackedRNNCells([deserialize_cell(c, keras, custom_objects) for c in inner["cells"]])
        if name in BUILTIN_CELLS:
            values = {k: _deserialize_value(v, keras, custom_objects) for k, v in inner.items()}
            return BUILTIN_CELLS[name].from_config(values)
        raise ValueError(
            f"cell config names an unknown tfrnn cell {name!r}; expected one of "
            f"{sorted(BUILTIN_CELLS) + ['StackedRNNCells']}"
        )
    return keras.layers.deserialize(config, custom_objects=custom_objects)


def cell_argument(
    key: str, value: Any, keras: ModuleType, keras_only: Collection[str] = ()
) -> tuple[Any, Any]:
    """`(what the tfrnn cell receives, the config entry)` for one namesake cell argument.

    Names tfrnn knows stay names (so the cell's seeded initializers and the fast loop's known
    derivatives apply), except those in `keras_only`, which this Keras defines differently;
    anything else (a Keras name, object, config dict or a function) goes through `keras`'
    getters.
    """
    if key.endswith("activation"):
        if value is None or (
            isinstance(value, str)
            and value not in keras_only
            and _known(tfrnn_activations.get, value)
        ):
            return value, value
        fn = keras.activations.get(value)
        return fn, keras.activations.serialize(fn)
    if key.endswith("_initializer"):
        if isinstance(value, str) and _known(tfrnn_initializers.check, value, key):
            return value, value
        initializer = keras.initializers.get(value)
        return initializer, keras.initializers.serialize(initializer)
    for suffix, module in (("_regularizer", keras.regularizers), ("_constraint", keras.constraints)):
        if key.endswith(suffix):
            obj = module.get(value)
            return obj, module.serialize(obj)
    return value, value


def _known(getter: Callable, *args) -> bool:
    try:
        getter(*args)
    except (TypeError, ValueError):
        return False
    return True


def set_untracked(layer: Any, name: str, value: Any) -> None:
    """Sets an attribute Keras must not wrap for tracking (configs stay plain dicts)."""
    object.__setattr__(layer, name, value)
