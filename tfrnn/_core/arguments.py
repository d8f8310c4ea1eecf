"""Checks of constructor and call arguments shared by the core and the adapters."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np


def check_bool(value: Any, argument: str) -> bool:
    """`value` as a bool; a `TypeError` naming `argument` for anything but a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{argument} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def accepts_argument(fn: Any, name: str) -> bool:
    """Whether `fn` takes a keyword argument `name` (or `**kwargs`)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters)
