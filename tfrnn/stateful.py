"""`StateVariables`: the `tf.Variable`s that carry a stateful RNN's states between calls."""

from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf


class StateVariables(tf.Module):
    """One non-trainable variable per state, `[batch, *state_shape]`, for one batch size.

    Created once, for the static batch size of the first call (or `build`); saved by
    `tf.train.Checkpoint` and in SavedModels with the module that owns it.

    Args:
      names: one name per state, e.g. `["h", "c"]`.
      name: the module's name scope.
    """

    def __init__(self, names: Sequence[str], name: Optional[str] = None):
        super().__init__(name=name)
        self.names = list(names)
        self.state_variables: list[tf.Variable] = []

    @property
    def created(self) -> bool:
        return bool(self.state_variables)

    @property
    def batch_size(self) -> Optional[int]:
        return int(self.state_variables[0].shape[0]) if self.state_variables else None

    def create(self, initial_values: Sequence[tf.Tensor]) -> None:
        """Creates the variables (eagerly, even while a function is being traced)."""
        with tf.init_scope(), self.name_scope:
            self.state_variables = [
                tf.Variable(value, trainable=False, name=name)
                for name, value in zip(self.names, initial_values)
            ]

    def read(self, dtype: tf.DType) -> list[tf.Tensor]:
        """The current states, cast to the compute dtype."""
        return [tf.cast(v.read_value(), dtype) for v in self.state_variables]

    def assign(self, values: Sequence[tf.Tensor]) -> list:
        """Writes new states (cast to the variables' dtype); returns the assign ops."""
        return [v.assign(tf.cast(value, v.dtype)) for v, value in zip(self.state_variables, values)]
