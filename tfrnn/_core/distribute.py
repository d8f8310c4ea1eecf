"""Stateful RNN states under `tf.distribute`: one slice of the global batch per replica.

A stateful RNN under a strategy keeps its states in `synchronization=ON_READ` variables: each
replica holds its own component, `[per_replica_batch, *state_shape]`, the states of its slice
of the global batch. Replica `r` (`replica_id_in_sync_group`) holds rows
`[r * per_replica_batch, (r + 1) * per_replica_batch)` of the global batch, the slice that
`strategy.experimental_distribute_dataset` gives it from a batched dataset.

tfrnn speaks in the batch a call sees: inside `strategy.run` a call takes (and a state is) the
per-replica batch; outside it, in the cross-replica context, everything takes the global batch:
`build`, `reset_state(states=...)`, direct calls, and checkpoints, which save the global
states (the replicas' components gathered in replica order) under the same keys as a
single-device RNN, so that a checkpoint restores under any number of replicas that divides its
batch, or on one device.

Why ON_READ and not TensorFlow's default saving: an ON_READ variable saves one aggregated value
(the sum, the mean or the first replica's) and restores it into every replica, which would
lose all but one replica's states. `GlobalState` saves and restores the gathered states instead.

This module knows nothing of RNNs; `tfrnn.stateful` uses it.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import tensorflow as tf

# The key a variable's value has in a checkpoint, so that a `GlobalState` and the plain
# variable of a single-device RNN are stored under the same name.
_VALUE_KEY = "VARIABLE_VALUE"


def current_strategy() -> Optional[tf.distribute.Strategy]:
    """The strategy of the enclosing `strategy.scope()` or `strategy.run`, if any."""
    return tf.distribute.get_strategy() if tf.distribute.has_strategy() else None


def in_replica_of(strategy: tf.distribute.Strategy) -> bool:
    """Whether the caller runs inside `strategy.run` (a replica), not cross-replica."""
    context = tf.distribute.get_replica_context()
    return context is not None and context.strategy is strategy


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    return type(strategy).__name__


@dataclasses.dataclass(frozen=True)
class ReplicaLayout:
    """How a stateful RNN's global batch splits among the replicas of a strategy.

    Attributes:
      global_batch: the rows of the whole batch, all replicas together.
      replicas: `strategy.num_replicas_in_sync` (1 without a strategy).
      strategy: the strategy's class name, for messages (`None` for one replica).
    """

    global_batch: int
    replicas: int = 1
    strategy: Optional[str] = None

    @property
    def replica_batch(self) -> int:
        """The rows each replica holds."""
        return self.global_batch // self.replicas

    @classmethod
    def of(cls, batch: int, strategy: Optional[tf.distribute.Strategy], per_replica: bool):
        """The layout for a call's `batch`, the per-replica batch if `per_replica` is true.

        Raises:
          ValueError: if a global `batch` does not divide among the replicas.
        """
        replicas = 1 if strategy is None else int(strategy.num_replicas_in_sync)
        if replicas == 1:
            # One replica (OneDeviceStrategy, or one device): plain variables suffice.
            return cls(int(batch))
        name = strategy_name(strategy)
        if per_replica:
            return cls(int(batch) * replicas, replicas, name)
        if batch % replicas:
            raise ValueError(
                f"a stateful RNN under {name} splits its states among {replicas} replicas, so "
                f"its global batch must be a multiple of {replicas}, got a global batch of "
                f"{batch} ({batch} / {replicas} replicas is not a whole per-replica batch); "
                f"use a multiple of {replicas}, such as {(batch // replicas + 1) * replicas}"
            )
        return cls(int(batch), replicas, name)

    def describe(self) -> str:
        """`global batch of 8 (2 replicas x 4 rows)`, or `batch of 8` for one replica."""
        if self.strategy is None:
            return f"batch of {self.global_batch}"
        return (
            f"global batch of {self.global_batch} ({self.replicas} replicas x "
            f"{self.replica_batch} rows)"
        )


def replica_variable(initial_value: tf.Tensor, name: str) -> tf.Variable:
    """A non-trainable variable with one component per replica, each `initial_value`.

    Must run in the cross-replica context of the strategy (under `strategy.scope()`).
    Reading it outside the replicas gives the first replica's component; use `gather`.
    """
    return tf.Variable(
        initial_value,
        trainable=False,
        name=name,
        synchronization=tf.VariableSynchronization.ON_READ,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )


def gather(variable: tf.Variable) -> tf.Tensor:
    """The global value of a `replica_variable`: the components in replica order.

    Under `MultiWorkerMirroredStrategy` this is a collective: every worker must call it.
    """
    strategy = variable.distribute_strategy
    with strategy.scope():
        return strategy.gather(variable, axis=0)


def _local_replica_ids(strategy: tf.distribute.Strategy) -> list[int]:
    """The `replica_id_in_sync_group` of each of this worker's components, in their order."""
    ids = strategy.experimental_distribute_values_from_function(
        lambda context: context.replica_id_in_sync_group
    )
    return [int(i) for i in strategy.experimental_local_results(ids)]


def scatter(variable: tf.Variable, value: tf.Tensor) -> tf.Operation:
    """Assigns each replica's component its slice of the global `value`.

    Each component is assigned on its own device; only this worker's components are written,
    so under `MultiWorkerMirroredStrategy` every worker writes its own replicas.
    """
    strategy = variable.distribute_strategy
    components = strategy.experimental_local_results(variable)
    rows = int(components[0].shape[0])
    value = tf.convert_to_tensor(value)
    updates = []
    for replica, component in zip(_local_replica_ids(strategy), components):
        with tf.device(component.device):
            piece = value[replica * rows : (replica + 1) * rows]
            updates.append(component.assign(tf.cast(piece, component.dtype)))
    return tf.group(updates)


class GlobalState(tf.__internal__.tracking.Trackable):
    """Checkpoints a `replica_variable` as its global value, as a plain variable would be.

    `tf.train.Checkpoint` calls `_serialize_to_tensors` when saving (the gathered states) and
    `_restore_from_tensors` when restoring (each replica gets its slice back).
    """

    def __init__(self, variable: tf.Variable):
        self._variable = variable

    def _serialize_to_tensors(self):
        return {_VALUE_KEY: gather(self._variable)}

    def _restore_from_tensors(self, restored_tensors):
        value = restored_tensors[_VALUE_KEY]
        expected = self._variable.distribute_strategy.num_replicas_in_sync * int(
            self._variable.shape[0]
        )
        if value.shape.rank is not None and value.shape[0] != expected:
            raise ValueError(
                f"the checkpoint holds the state {self._variable.name} for a global batch of "
                f"{value.shape[0]}, but this RNN holds a global batch of {expected} "
                f"({self._variable.distribute_strategy.num_replicas_in_sync} replicas x "
                f"{self._variable.shape[0]}); restore it into an RNN of the same global batch"
            )
        return scatter(self._variable, value)
