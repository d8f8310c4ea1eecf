"""Lists of variables: Keras 3 variables unwrapped, duplicates dropped, order kept."""

from __future__ import annotations

from typing import Any, Iterable

import tensorflow as tf


def unwrap(variable: Any) -> Any:
    """The `tf.Variable` behind a Keras 3 variable (what optimizers and tapes see)."""
    return variable if isinstance(variable, tf.Variable) else getattr(variable, "value", variable)


def unique(variables: Iterable[Any]) -> list:
    """`variables` unwrapped, each once, in first-seen order."""
    seen, result = set(), []
    for variable in variables:
        variable = unwrap(variable)
        if id(variable) not in seen:
            seen.add(id(variable))
            result.append(variable)
    return result
