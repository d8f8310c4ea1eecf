"""`StateVariables`: the `tf.Variable`s that carry a stateful RNN's states between calls."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import tensorflow as tf

from tfrnn._core import distribute


class _StateList(tf.Module):
    """The state variables in order, which checkpoints see as a list's children `0`, `1`, ...

    It exists from the start, so that a checkpoint restored before the states are created
    binds to it and restores each state as it is added (a list created later would not be
    the object the checkpoint was bound to). What it checkpoints may stand in for the
    variables (`tfrnn.distribute.GlobalState`).
    """

    def __init__(self):
        super().__init__(name=None)
        self._variables: list[tf.Variable] = self._no_dependency([])

    def set(self, variables: Sequence[tf.Variable], checkpointed: Sequence) -> None:
        self._variables = self._no_dependency(list(variables))
        for index, trackable in enumerate(checkpointed):
            self._track_trackable(trackable, name=str(index), overwrite=True)

    def __iter__(self):
        return iter(self._variables)

    def __len__(self) -> int:
        return len(self._variables)

    def __getitem__(self, index):
        return self._variables[index]


class StateVariables(tf.Module):
    """One non-trainable variable per state, `[batch, *state_shape]`, for one batch size.

    Created once, for the static batch size of the first call (or `build`); saved by
    `tf.train.Checkpoint` and in SavedModels with the module that owns it.

    Under a `tf.distribute` strategy (created in its scope or inside `strategy.run`) each
    variable holds one component per replica, `[per_replica_batch, *state_shape]`: the states
    of that replica's slice of the global batch (see `tfrnn.distribute`). Inside
    `strategy.run` reads and writes touch the replica's own component; outside it they take
    the global batch (the components gathered in replica order, or scattered back), and so do
    checkpoints.

    Args:
      names: one name per state, e.g. `["h", "c"]`.
      name: the module's name scope.
    """

    def __init__(self, names: Sequence[str], name: Optional[str] = None):
        super().__init__(name=name)
        self.names = list(names)
        self.state_variables = _StateList()
        self._layout: Optional[distribute.ReplicaLayout] = None
        self._strategy: Optional[tf.distribute.Strategy] = None

    @property
    def created(self) -> bool:
        return bool(self.state_variables)

    @property
    def batch_size(self) -> Optional[int]:
        """The global batch size (all replicas together), `None` before the states exist."""
        return self._layout.global_batch if self._layout is not None else None

    @property
    def layout(self) -> Optional[distribute.ReplicaLayout]:
        """How the global batch splits among replicas (`None` before the states exist)."""
        return self._layout

    def layout_for(self, batch: int) -> distribute.ReplicaLayout:
        """The layout that a call's `batch` here implies: per replica inside `strategy.run`.

        Raises:
          ValueError: if a global `batch` does not divide among the strategy's replicas.
        """
        strategy = distribute.current_strategy()
        per_replica = strategy is not None and distribute.in_replica_of(strategy)
        return distribute.ReplicaLayout.of(batch, strategy, per_replica)

    def global_view(self) -> bool:
        """Whether reads and writes here take the global batch of replicated states.

        True for replicated states outside `strategy.run` (the cross-replica context, or no
        strategy scope at all), where the replicas' components must be gathered or scattered.
        """
        return self._strategy is not None and not distribute.in_replica_of(self._strategy)

    def batch_here(self) -> Optional[int]:
        """The batch that a call (or a state) takes here: per replica inside `strategy.run`."""
        if self._layout is None:
            return None
        if self._strategy is not None and not self.global_view():
            return self._layout.replica_batch
        return self._layout.global_batch

    def batch_note(self) -> str:
        """For messages about state shapes: how the batch splits among replicas, if it does."""
        layout = self._layout
        if layout is None:
            strategy = distribute.current_strategy()
            if strategy is None or strategy.num_replicas_in_sync == 1:
                return ""
            return (
                f"; under {distribute.strategy_name(strategy)} states take the global batch "
                f"outside strategy.run and a replica's slice of it inside"
            )
        if layout.replicas == 1:
            return ""
        return (
            f"; the states hold a {layout.describe()}: outside strategy.run they take the "
            f"global batch, {layout.global_batch}, inside it a replica's, {layout.replica_batch}"
        )

    def misplaced_replica_call(self) -> Optional[str]:
        """Why single-device states cannot serve this call, if it runs in a strategy's replica.

        States created outside a strategy are one variable that every replica would read and
        overwrite with its own slice of the batch.
        """
        strategy = distribute.current_strategy()
        if (
            self._strategy is None
            and strategy is not None
            and distribute.in_replica_of(strategy)
            and strategy.num_replicas_in_sync > 1
        ):
            return (
                f"this stateful RNN's states were created outside {distribute.strategy_name(strategy)}"
                f" (for a {self._layout.describe()}), but it is called inside strategy.run on "
                f"{strategy.num_replicas_in_sync} replicas; create the RNN and its states (build "
                "or a first call) under strategy.scope() so that each replica gets its own"
            )
        return None

    def ensure(
        self,
        batch: Optional[int],
        initial_state: Callable[[int], list],
        values: Optional[Sequence[tf.Tensor]] = None,
    ) -> None:
        """Creates the variables for a call's static `batch`, unless they exist.

        Args:
          batch: the batch a call (or `build`, or `reset_state(states=...)`) has here.
          initial_state: `batch -> states`, the cell's initial states (zeros by default).
          values: the states to start from instead.

        Raises:
          ValueError: for an unknown batch, or a global batch that does not divide among
            the strategy's replicas.
        """
        if self.created:
            return
        if batch is None:
            raise ValueError(
                "a stateful RNN needs a static batch size, got inputs with an unknown batch "
                "size; give the batch in the input shape (e.g. a tf.function input_signature "
                "or tf_keras.Input(batch_size=...))"
            )
        # Under a strategy `batch` is a replica's inside strategy.run, else the global one.
        layout = self.layout_for(int(batch))
        with tf.init_scope():  # created eagerly, and so are their initial values
            initial = initial_state(layout.replica_batch)
        self.create(initial, layout)
        if values is not None:
            self.assign(values)

    def check_call_batch(self, batch: Optional[int]) -> None:
        """Raises a `ValueError` if a call's static `batch` is not the one the states hold here.

        An unknown `batch` (a function traced without one) is checked when it runs (see
        `with_checked_batch`).
        """
        misplaced = self.misplaced_replica_call()
        if misplaced is not None:
            raise ValueError(misplaced)
        expected = self.batch_here()
        layout = self._layout
        if batch == expected or batch is None:
            return
        if layout.replicas == 1:
            raise ValueError(
                f"this stateful RNN holds states for batch size {expected}, got inputs with "
                f"batch size {batch}; feed batches of {expected}, or create a new RNN for "
                "another batch size"
            )
        where = (
            "outside strategy.run, where a call takes the global batch"
            if self.global_view()
            else "inside strategy.run, where a call takes its replica's slice of the batch"
        )
        raise ValueError(
            f"this stateful RNN holds states for a {layout.describe()}, got inputs with "
            f"batch size {batch} {where}, {expected}; feed global batches of "
            f"{layout.global_batch} (strategy.experimental_distribute_dataset gives each "
            f"replica {layout.replica_batch} rows of them)"
        )

    def with_checked_batch(self, inputs: tf.Tensor) -> tf.Tensor:
        """`inputs` of an unknown static batch, checked at run time to have the states' batch.

        The result has that static batch; a call with another one fails before its loop
        runs, so the states are not touched.
        """
        expected = self.batch_here()
        check = tf.debugging.assert_equal(
            tf.shape(inputs)[0],
            tf.constant(expected, tf.int32),
            message=(
                f"this stateful RNN holds states for batch size {expected}, got inputs with "
                f"another batch size; feed batches of {expected}, or create a new RNN for "
                "another batch size"
            ),
        )
        with tf.control_dependencies([check]):
            inputs = tf.identity(inputs)
        return tf.ensure_shape(inputs, [expected] + [None] * (inputs.shape.rank - 1))

    def create(self, initial_values: Sequence[tf.Tensor], layout: distribute.ReplicaLayout) -> None:
        """Creates the variables (eagerly, even while a function is being traced).

        Args:
          initial_values: one value per state, `[layout.replica_batch, *state_shape]`.
          layout: the batch the variables hold.
        """
        strategy = distribute.current_strategy() if layout.replicas > 1 else None
        if strategy is not None and distribute.in_replica_of(strategy):
            # A first call inside strategy.run: a strategy's variables are created outside
            # its replicas, so the replicas meet in merge_call, which creates them once.
            tf.distribute.get_replica_context().merge_call(
                lambda _: self.create(initial_values, layout)
            )
            return
        if self.created:
            return
        # Variables are created eagerly (init_scope, which also leaves a function's strategy
        # scope: it is entered again out there). Tracking happens there too, so that a
        # checkpoint restored before the states existed is applied to them eagerly.
        with tf.init_scope(), self.name_scope:
            if strategy is None:
                variables = [
                    tf.Variable(value, trainable=False, name=name)
                    for name, value in zip(self.names, initial_values)
                ]
                checkpointed = variables
            else:
                with strategy.scope():
                    variables = [
                        distribute.replica_variable(value, name)
                        for name, value in zip(self.names, initial_values)
                    ]
                self._strategy = strategy
                # Checkpointed as their gathered global value (TensorFlow would save one
                # replica's), under the keys a single-device RNN's variables have.
                checkpointed = [distribute.GlobalState(v) for v in variables]
            self.state_variables.set(variables, checkpointed)
        self._layout = layout

    def read(self, dtype: tf.DType) -> list[tf.Tensor]:
        """The current states in the batch here (see `batch_here`), cast to the compute dtype."""
        if self.global_view():
            return [tf.cast(distribute.gather(v), dtype) for v in self.state_variables]
        return [tf.cast(v.read_value(), dtype) for v in self.state_variables]

    def assign(self, values: Sequence[tf.Tensor]) -> list:
        """Writes new states (cast to the variables' dtype); returns the assign ops.

        `values` are in the batch here: a replica's slice inside `strategy.run`, else global.
        """
        if self.global_view():
            return [distribute.scatter(v, value) for v, value in zip(self.state_variables, values)]
        return [v.assign(tf.cast(value, v.dtype)) for v, value in zip(self.state_variables, values)]
