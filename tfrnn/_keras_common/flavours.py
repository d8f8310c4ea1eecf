"""Which Keras a layer or symbolic tensor belongs to, and the error for a mix-up.

`tfrnn.keras` holds Keras 3 layers and `tfrnn.tf_keras` tf-keras layers; the two Kerases
cannot share a model. A tensor or cell of the other Keras gets a `TypeError` that names the
adapter to use, instead of an error from deep inside Keras. Duck-typed: no Keras import.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

_NAMES = {"keras": "Keras 3", "tf_keras": "tf-keras"}
_ADAPTERS = {"keras": "tfrnn.keras", "tf_keras": "tfrnn.tf_keras"}
_INPUTS = {"keras": "keras.Input", "tf_keras": "tf_keras.Input"}


def flavour_of(value: Any, kind: str) -> Optional[str]:
    """`"keras"` or `"tf_keras"` if `value` is that Keras' `kind` (`"Layer"`, `"KerasTensor"`)."""
    for cls in type(value).__mro__:
        package = cls.__module__.split(".")[0]
        if package in _NAMES and cls.__name__ == kind:
            return package
    return None


def check_tensors(values: Iterable[Any], argument: str, layer: str, expected: str) -> None:
    """Raises a `TypeError` if any of `values` is a symbolic tensor of the other Keras.

    Args:
      values: the tensors of one argument (flat).
      argument: how the message names the argument (`"inputs"`).
      layer: the layer's class name (`"LSTM"`).
      expected: the Keras of the layer, `"keras"` or `"tf_keras"`.
    """
    for value in values:
        flavour = flavour_of(value, "KerasTensor")
        if flavour is not None and flavour != expected:
            raise TypeError(
                f"{argument} is a {_NAMES[flavour]} symbolic tensor ({_INPUTS[flavour]}), but "
                f"{_ADAPTERS[expected]}.{layer} is a {_NAMES[expected]} layer; in a "
                f"{_NAMES[flavour]} model use {_ADAPTERS[flavour]}.{layer}"
            )


def check_cell(cell: Any, argument: str, expected: str) -> None:
    """Raises a `TypeError` if `cell` is a layer of the other Keras."""
    flavour = flavour_of(cell, "Layer")
    if flavour is not None and flavour != expected:
        raise TypeError(
            f"{argument} is a {_NAMES[flavour]} layer ({type(cell).__name__}), but "
            f"{_ADAPTERS[expected]}.RNN is a {_NAMES[expected]} layer; use a {_NAMES[expected]} "
            f"or tfrnn cell here, or {_ADAPTERS[flavour]}.RNN in a {_NAMES[flavour]} model"
        )
