"""Configs of the cells a `tfrnn.tf_keras` layer runs: tfrnn cells by name, others as Keras objects."""

from __future__ import annotations

from typing import Any, Optional

import tf_keras

from tfrnn.gru_cell import GRUCell
from tfrnn.lstm_cell import LSTMCell
from tfrnn.simple_rnn_cell import SimpleRNNCell
from tfrnn.stacked_cells import StackedRNNCells

BUILTIN_CELLS = {cls.__name__: cls for cls in (SimpleRNNCell, LSTMCell, GRUCell)}


def _serialize_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return tf_keras.saving.serialize_keras_object(value)


def _deserialize_value(value: Any, custom_objects: Optional[dict]) -> Any:
    if isinstance(value, dict) and "class_name" in value:
        return tf_keras.saving.deserialize_keras_object(value, custom_objects=custom_objects)
    return value


def serialize_cell(cell: Any) -> dict:
    """A JSON-able config of `cell`: tfrnn cells by name, other cells as Keras objects."""
    if isinstance(cell, StackedRNNCells):
        cells = [serialize_cell(c) for c in cell.cells]
        return {"module": "tfrnn", "class_name": "StackedRNNCells", "config": {"cells": cells}}
    if type(cell) in BUILTIN_CELLS.values():
        config = {k: _serialize_value(v) for k, v in cell.get_config().items()}
        return {"module": "tfrnn", "class_name": type(cell).__name__, "config": config}
    if not callable(getattr(cell, "get_config", None)):
        # NotImplementedError is Keras' signal for "no config" (SavedModel saves without one).
        raise NotImplementedError(
            f"cell {type(cell).__name__} cannot be serialized: it has no get_config(); give it "
            "get_config()/from_config() and register it with "
            "tf_keras.saving.register_keras_serializable"
        )
    return tf_keras.saving.serialize_keras_object(cell)


def deserialize_cell(config: Any, custom_objects: Optional[dict] = None) -> Any:
    """The cell `serialize_cell` (or tf-keras) described."""
    if isinstance(config, (list, tuple)):
        return [deserialize_cell(c, custom_objects) for c in config]
    if isinstance(config, dict) and config.get("module") == "tfrnn":
        name, inner = config.get("class_name"), config.get("config", {})
        if name == "StackedRNNCells":
            return StackedRNNCells([deserialize_cell(c, custom_objects) for c in inner["cells"]])
        if name in BUILTIN_CELLS:
            values = {k: _deserialize_value(v, custom_objects) for k, v in inner.items()}
            return BUILTIN_CELLS[name].from_config(values)
        raise ValueError(
            f"cell config names an unknown tfrnn cell {name!r}; expected one of "
            f"{sorted(BUILTIN_CELLS) + ['StackedRNNCells']}"
        )
    return tf_keras.layers.deserialize(config, custom_objects=custom_objects)
