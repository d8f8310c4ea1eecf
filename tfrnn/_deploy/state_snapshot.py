"""The state variables of a model's stateful RNNs, kept as they were across an export.

An export or a conversion calls the model (its reference outputs) and runs traced functions
that update a stateful model's states; the user's model must come out of it, succeeded or
failed, with the states it went in with. `StateSnapshot` records them and puts them back.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import tensorflow as tf


class StateSnapshot:
    """The values of some state variables, restorable; a context manager that restores on exit.

    Args:
      variables: the variables to keep (read now).
    """

    def __init__(self, variables: Iterable[tf.Variable]):
        self.variables = list(variables)
        self.values: list[np.ndarray] = [v.numpy() for v in self.variables]

    @classmethod
    def of_rnns(cls, rnns: Iterable[Any]) -> "StateSnapshot":
        """The states of `rnns` (`tfrnn.RNN`s; those without states contribute nothing)."""
        return cls(v for rnn in rnns for v in (getattr(rnn, "states", None) or []))

    def restore(self) -> None:
        """Sets every variable back to its recorded value."""
        for variable, value in zip(self.variables, self.values):
            variable.assign(value)

    def __enter__(self) -> "StateSnapshot":
        return self

    def __exit__(self, *exc_info) -> None:
        self.restore()
