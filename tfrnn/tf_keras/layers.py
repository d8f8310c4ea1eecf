"""tfrnn's recurrent layers as tf-keras layers: `RNN`, `SimpleRNN`, `LSTM` and `GRU`.

Each layer is a `tf_keras.layers.Layer` that owns a `tfrnn.RNN` and forwards its calls to it:
the time loop and its XLA compilation stay in the core; this module adapts Keras' side of the
contract — symbolic inputs and static output shapes, masks in and out, stateful batches and
`reset_states`, the weight lists of the tf-keras namesakes, regularization losses, and
`get_config`/`from_config` (the layers are registered, so `tf_keras.models.load_model` needs
no `custom_objects` once `tfrnn` is imported).

Stateful layers keep their states in the core's non-trainable `tf.Variable`s (`layer.states`).
As in tf-keras they are not part of `weights`, so `get_weights()`/`set_weights()` (and whole
models' weight lists) match the tf-keras namesake exactly; unlike tf-keras they are saved with
the model (`.keras`, SavedModel and checkpoints).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Optional, Sequence

import tensorflow as tf
import tf_keras

from tfrnn._core import trace_context
from tfrnn._core.arguments import check_bool
from tfrnn._keras_common import cell_config
from tfrnn._keras_common import flavours
from tfrnn._keras_common import input_structure
from tfrnn._keras_common import state_structure
from tfrnn._keras_common import weights as keras_weights
from tfrnn.cell import RNNCell
from tfrnn.gru_cell import GRUCell
from tfrnn.lstm_cell import LSTMCell
from tfrnn.rnn import RNN as CoreRNN
from tfrnn.simple_rnn_cell import SimpleRNNCell
from tfrnn.stacked_cells import StackedRNNCells
from tfrnn.tf_keras import cell_layer, saving

__all__ = ["RNN", "SimpleRNN", "LSTM", "GRU"]

_register = tf_keras.saving.register_keras_serializable(package="tfrnn")
# What a namesake passes to its layer rather than to its cell.
_LAYER_ARGUMENTS = (
    "return_sequences", "return_state", "go_backwards", "stateful", "unroll", "time_major",
    "activity_regularizer",
)  # fmt: skip


class _CellFactory:
    """Creates a namesake layer's cell once the layer knows its name and variable dtype."""

    def __init__(self, cell_class: type, arguments: dict):
        self.cell_class = cell_class
        self.arguments = arguments

    def __call__(self, dtype: str) -> RNNCell:
        # Built inside the layer's name scope, the cell names its weights
        # `<layer>/lstm_cell/kernel:0` as tf-keras does: distinct for every layer (Bidirectional's
        # two), which HDF5 weight files need.
        return self.cell_class(**self.arguments, dtype=dtype, name=cell_config.CELL_NAMES[self.cell_class])


# -- the layers --------------------------------------------------------------------------------


@_register
class RNN(tf_keras.layers.Layer):
    """A tf-keras recurrent layer that runs a cell with `tfrnn.RNN`, as `tf_keras.layers.RNN` does.

    Inputs are `[batch, timesteps, features...]` (`[timesteps, batch, ...]` with
    `time_major=True`), or a `tf.RaggedTensor` `[batch, (timesteps), features...]`; the
    output is `[batch, output_size]`, or `[batch, timesteps, output_size]` with
    `return_sequences=True`; with `return_state=True` the layer returns `[output, *states]`,
    the states nested as tf-keras nests them (`[output, h, c]` for an LSTM, `[output, [h1,
    c1], h2]` for an LSTM cell under a GRU cell). The layer consumes the mask Keras
    propagates (`Embedding(mask_zero=True)`, `Masking`) and propagates its output mask as
    tf-keras does (the input mask when `return_sequences`, none otherwise).
    `initial_state=` and `constants=` may be symbolic Keras tensors.

    `layer.cell` is a tf-keras layer (see `tfrnn.tf_keras.cell_layer`), and checkpoints,
    SavedModels, `.keras` and `.h5` files keep the weights where tf-keras' namesakes keep
    them, so files load both ways between the two (see `tfrnn.tf_keras.saving`).

    Stateful layers (`stateful=True`) need a fixed batch size (`tf_keras.Input(...,
    batch_size=B)`); their states are non-trainable variables (`states`), carried across
    batches of `fit(shuffle=False)`, `predict_on_batch` and calls, and reset by
    `reset_states()` / `reset_states(states=[...])` / `model.reset_states()`. An explicit
    `initial_state` wins over the stored state for its call (see `tfrnn.RNN`). Unlike
    tf-keras, stateful layers work under `tf.distribute` strategies: `Input(batch_size=...)`
    is the global batch, each replica keeps the states of its slice of it, and the states are
    created at the first call (`fit` and `predict` make it inside the replicas), since
    tf-keras traces models under a strategy with a batch that may be per replica.

    >>> x = tf_keras.Input((None, 5))
    >>> y = tfrnn.tf_keras.RNN([tfrnn.LSTMCell(8), tfrnn.GRUCell(4)])(x)
    >>> tf_keras.Model(x, y).output_shape
    (None, 4)

    Args:
      cell: any cell `tfrnn.RNN` takes: a tfrnn cell, a tf-keras or Keras 3 layer cell (such
        as the Keras docs' `MinimalRNNCell`), a `tf.Module` with `call` and `state_size`, or a
        list of cells to stack.
      return_sequences: return every step's output instead of the last one.
      return_state: also return the final states.
      go_backwards: process the sequence backwards; the returned sequence is reversed.
      stateful: carry the final states of each batch over to the next (see above).
      unroll: unroll the loop (needs a static number of timesteps).
      zero_output_for_mask: zeros at masked steps of the returned sequence.
      jit_compile: compile the time loop with XLA.
      time_major: inputs and returned sequences are `[timesteps, batch, ...]` (the mask too).
      **kwargs: `tf_keras.layers.Layer` arguments (`name`, `dtype`, `input_shape`,
        `batch_input_shape`, `activity_regularizer`, ...).
    """

    def __init__(
        self,
        cell: Any,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        zero_output_for_mask: bool = False,
        jit_compile: bool = True,
        time_major: bool = False,
        **kwargs,
    ):
        if "input_shape" not in kwargs and ("input_dim" in kwargs or "input_length" in kwargs):
            kwargs["input_shape"] = (kwargs.pop("input_length", None), kwargs.pop("input_dim", None))
        super().__init__(**kwargs)
        if isinstance(cell, _CellFactory):
            cell = cell(self.dtype)
        options = dict(
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            zero_output_for_mask=zero_output_for_mask,
            jit_compile=jit_compile,
        )
        cell_config.set_untracked(self, "_options", options)
        # Untracked: checkpoints see the cell as tf-keras' namesake has it (see saving).
        cell_config.set_untracked(self, "_rnn", CoreRNN(cell, **self._options))
        self._time_major = check_bool(time_major, "time_major")
        self.stateful = self._rnn.stateful
        self.supports_masking = True
        self.cell = cell_layer.view_of(self._rnn.cell)
        self._num_constants = 0
        self._states_deferred = False
        cell_config.set_untracked(self, "_assigned_states", None)
        if self.stateful:
            cell_config.set_untracked(self, "state_store", saving.StateStore(self, name=f"{self.name}_states"))

    # -- options (read-only, except what tf_keras.layers.Bidirectional sets) ---------------------

    return_sequences = property(lambda self: self._rnn.return_sequences)
    return_state = property(lambda self: self._rnn.return_state)
    go_backwards = property(lambda self: self._rnn.go_backwards)
    unroll = property(lambda self: self._rnn.unroll)
    jit_compile = property(lambda self: self._rnn.jit_compile)
    time_major = property(lambda self: self._time_major)

    @property
    def zero_output_for_mask(self) -> bool:
        return self._rnn.zero_output_for_mask

    @zero_output_for_mask.setter
    def zero_output_for_mask(self, value: bool) -> None:
        # Bidirectional sets this on its fresh copies; the core fixes its options when it is
        # created, so a new core takes over the same cell (and weights).
        value = check_bool(value, "zero_output_for_mask")
        if value != self._rnn.zero_output_for_mask:
            self._options["zero_output_for_mask"] = value
            cell_config.set_untracked(self, "_rnn", CoreRNN(self._rnn.cell, **self._options))

    # -- states ----------------------------------------------------------------------------------

    @property
    def states(self) -> Any:
        """The states, nested as tf-keras nests them (`[h, c]`; `([h1, c1], h2)` for stacks).

        A stateful layer's are its state variables (`[batch, *state_shape]` each), `None`s
        before they exist; a layer that is not stateful has `None`s, as in tf-keras, or what
        was assigned to it. Assigning to a stateful layer's `states` sets their values
        (`reset_states(states=...)`; `None`: the initial state).
        """
        if not self.stateful and self._assigned_states is not None:
            return self._assigned_states
        flat = list(self._rnn.states) if self.stateful else []
        return state_structure.pack_states(self._rnn.cell, flat or [None] * self._state_count())

    @states.setter
    def states(self, states: Any) -> None:
        if self.stateful:
            self.reset_states(states)
        else:
            cell_config.set_untracked(self, "_assigned_states", states)

    def _state_count(self) -> int:
        return len(self._rnn.state_shapes)

    def get_initial_state(self, inputs: Any) -> list:
        """The states a call on `inputs` starts from (tf-keras' `RNN.get_initial_state`)."""
        inputs = tf.nest.flatten(inputs)[0]
        batch = tf.shape(inputs)[1 if self._time_major else 0]
        flat = self._rnn.get_initial_state(batch, inputs.dtype)
        return list(state_structure.pack_states(self._rnn.cell, flat))

    def reset_states(self, states: Any = None) -> None:
        """Sets a stateful layer's states to the cell's initial state, or to `states`.

        As in tf-keras, a layer that is not stateful raises `AttributeError`, and so does
        `reset_states()` before the layer is built (`ValueError`: the batch size is unknown);
        `reset_states(states=[...])` before the first call creates the states for the batch
        of the values given.

        Args:
          states: `None`, or one array per state, `[batch, *state_shape]` each (for stacked
            cells flat or nested per cell). Nothing changes if they are invalid.

        Raises:
          AttributeError: the layer is not stateful.
          ValueError: no `states` before the layer is built, or invalid `states`.
        """
        if not self.stateful:
            raise AttributeError(
                f"Layer must be stateful. {self.name} was created with stateful=False, so "
                "it has no states to reset"
            )
        if states is None and not self.built and not self._rnn.states:
            raise ValueError(
                f"{self.name} is stateful, and it needs to know its batch size before its "
                "states can be reset: build or call it first (pass batch_size=... to "
                "tf_keras.Input, or batch_input_shape=... to the first layer), or give the "
                "states: reset_states(states=[...]) with one array per state"
            )
        if states is None and self._states_deferred and not self._rnn.states:
            return  # under a strategy before the first call: the states start out reset
        with _dtype_names_for_initial_state(self._rnn.cell):
            self._rnn.reset_state(states)

    reset_state = reset_states  # Keras 3's name

    # -- weights and saving ------------------------------------------------------------------------

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Assigns `weights` (NumPy arrays in the order of `get_weights()`); nothing changes on error."""
        keras_weights.assign_checked(self.weights, list(weights), "weights", self.name)

    def load_own_variables(self, store) -> None:
        """Loads the layer's own `.keras` entries (those of tfrnn 0.1.0's files, see `saving`)."""
        saving.load_own_variables(self, store)

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        children = super()._trackable_children(save_type, **kwargs)
        return saving.trackable_children(self, children, save_type)

    def _lookup_dependency(self, name, cached_dependencies=None):
        found = saving.lookup_dependency(self, name)
        if found is not None:
            return found
        return super()._lookup_dependency(name, cached_dependencies)

    # -- building and calling ---------------------------------------------------------------------

    def _core_input_shape(self, input_shape: Any) -> Any:
        """The `[batch, timesteps, ...]` shape of the sequence among `input_shape` (a nest of
        them for a cell with nested inputs)."""

        def batch_major(shape: tf.TensorShape) -> tf.TensorShape:
            if shape.rank is None or shape.rank < 3:
                layout = "timesteps, batch" if self._time_major else "batch, timesteps"
                raise ValueError(
                    f"inputs of {self.name} must have rank >= 3, [{layout}, features...], got "
                    f"input_shape {input_shape}"
                )
            if self._time_major:
                return tf.TensorShape([shape[1], shape[0]]).concatenate(shape[2:])
            return shape

        return tf.nest.map_structure(batch_major, input_structure.sequence_shapes(input_shape))

    def build(self, input_shape: Any) -> None:
        """Creates the cell's variables (and a stateful layer's states) for `input_shape`."""
        shape = self._core_input_shape(input_shape)
        if self.stateful and input_structure.first(shape)[0] is None:
            raise ValueError(
                f"{self.name} is stateful, so it needs a fixed batch size, got input_shape "
                f"{input_structure.first(shape)} with an unknown batch size; pass "
                "batch_size=... to tf_keras.Input (or batch_input_shape=... to the first layer)"
            )
        # tf-keras builds models under a strategy outside its replicas, with a batch that may
        # be global (batch_input_shape) or per replica (Input divides batch_size): the states
        # then wait for the first call, whose batch says which (see _call).
        deferred = self.stateful and _replicas_outside_run() > 1
        with _stack_name_scope(self._rnn.cell):
            if deferred:
                with trace_context.scope(ignore_states=True):
                    self._rnn.build(shape)
                self._states_deferred = True
            else:
                with _dtype_names_for_initial_state(self._rnn.cell if self.stateful else None):
                    self._rnn.build(shape)
        self._track_cell_weights()
        super().build(input_shape)

    def _track_cell_weights(self) -> None:
        """Has `self.cell` (and the layers under it) hold the variables the core built."""
        for view in cell_layer.views_in(self.cell):
            if isinstance(view, cell_layer.CellLayer):
                view.track_weights()
        known = {id(v) for v in self.cell.weights}
        extra = [v for v in self._rnn.trainable_variables if id(v) not in known]
        if extra and isinstance(self.cell, cell_layer.CellLayer):
            self.cell.track_extra(extra)

    def __call__(self, *args, **kwargs):
        # A Keras 3 tensor would fail deep inside tf-keras; say which adapter to use instead.
        for argument, value in [*zip(("inputs",), args), *kwargs.items()]:
            flavours.check_tensors(tf.nest.flatten(value), argument, type(self).__name__, "tf_keras")
        constants = kwargs.get("constants")
        if constants is not None:
            # Recorded (and configured) as tf-keras does, so that a flat [inputs, *states,
            # *constants] call, as a loaded model makes it, finds the constants.
            self._num_constants = len(tf.nest.flatten(constants))
        return super().__call__(*args, **kwargs)

    def _split_inputs(self, inputs, initial_state, constants):
        """`[inputs, *initial_state, *constants]` (how Bidirectional passes them) taken apart."""
        if isinstance(inputs, list):
            count = self._num_constants
            if count:
                initial_state, constants = inputs[1:-count], inputs[-count:]
            else:
                initial_state = inputs[1:]
            initial_state = initial_state or None
            inputs = inputs[0]
        return inputs, initial_state, constants

    def call(self, inputs, mask=None, training=None, initial_state=None, constants=None):
        return self._call(inputs, mask, training, initial_state, constants)

    # Keras runs `call` through autograph; the adapter and the core decide in Python (shapes,
    # options), and the core's own function is traced without autograph.
    @tf.autograph.experimental.do_not_convert
    def _call(self, inputs, mask, training, initial_state, constants):
        inputs, initial_state, constants = self._split_inputs(inputs, initial_state, constants)
        if mask is not None:
            mask = tf.nest.flatten(mask)[0]
        if self._time_major:
            if any(isinstance(t, tf.RaggedTensor) for t in tf.nest.flatten(inputs)):
                raise ValueError(
                    f"inputs of {self.name} are ragged, [batch, (timesteps), features], but "
                    "the layer has time_major=True; ragged inputs are batch-major"
                )
            inputs = tf.nest.map_structure(_swap_batch_and_time, inputs)
            mask = None if mask is None else tf.transpose(mask)
        inputs = self._with_state_batch(inputs)
        shapes_only = trace_context.scope(ignore_states=True) if self._shapes_only(inputs) else contextlib.nullcontext()
        creates_states = self.stateful and not self._rnn.states
        with shapes_only, _dtype_names_for_initial_state(self._rnn.cell if creates_states else None):
            results = self._rnn(
                inputs,
                mask=mask,
                initial_state=initial_state,
                constants=self._constants_for_core(constants),
                training=training,
            )
        return self._keras_results(results)

    def _with_state_batch(self, inputs):
        """`inputs` with a stateful layer's batch, where Keras feeds batches of unknown size."""
        states = self._rnn.states
        unknown = input_structure.first(inputs).shape[0] is None
        if self.stateful and states and unknown:
            batch = states[0].shape[0]

            def with_batch(tensor):
                if not isinstance(tensor, tf.Tensor):
                    return tensor  # ragged: the core checks its batch when it runs
                return tf.ensure_shape(tensor, [batch] + [None] * (tensor.shape.rank - 1))

            inputs = tf.nest.map_structure(with_batch, inputs)
        if self._states_deferred and not states and unknown:
            if not tf.distribute.in_cross_replica_context():
                raise ValueError(
                    f"{self.name} is stateful under {type(tf.distribute.get_strategy()).__name__}"
                    ", so its states are created at its first call inside the replicas, but "
                    "that call got batches of unknown size; give each replica batches of a "
                    "fixed size (strategy.distribute_datasets_from_function, batching each "
                    "replica's dataset with drop_remainder=True), or create the states first, "
                    "outside the replicas: reset_states(states=[...]) with the global batch"
                )
        return inputs

    def _constants_for_core(self, constants):
        # tf-keras' stacks take constants and pass them to the cells that accept them only;
        # tfrnn's refuses constants none of its cells takes.
        cell = self._rnn.cell
        if constants is not None and isinstance(cell, StackedRNNCells) and not cell.accepts_constants:
            return None
        return constants

    def _keras_results(self, results):
        """The core's results as tf-keras returns them (time-major, states nested)."""
        swap = self._time_major and self.return_sequences
        output, states = (results[0], results[1:]) if self.return_state else (results, [])
        if swap:
            output = tf.nest.map_structure(_swap_batch_and_time, output)
        states = state_structure.pack_states(self._rnn.cell, states) if self.return_state else []
        return input_structure.layer_outputs(output, states, self.return_state)

    def _shapes_only(self, inputs: tf.Tensor) -> bool:
        """Whether this call only gives a model its shapes (the core then ignores the states).

        Under a strategy, tf-keras traces a functional model outside the replicas with a batch
        that may be per replica: a stateful layer's call there runs from the initial state.
        Inside strategy.run, and for the global batch of existing states, it runs with them.
        """
        if not (self.stateful and not tf.executing_eagerly() and _replicas_outside_run() > 1):
            return False
        global_batch = _global_batch(self._rnn.states)
        return global_batch is None or input_structure.first(inputs).shape[0] != global_batch

    def compute_output_shape(self, input_shape: Any):
        """The static output shape(s) for inputs of `input_shape` (states flat, as tf-keras')."""
        shape = input_structure.first(self._core_input_shape(input_shape))
        batch, time = shape[0], shape[1]
        leading = [batch]
        if self.return_sequences:
            leading = [time, batch] if self._time_major else [batch, time]
        outputs = [tf.TensorShape(leading).concatenate(s) for s in tf.nest.flatten(self._rnn.output_size)]
        output = outputs[0] if len(outputs) == 1 else outputs
        if not self.return_state:
            return output
        states = [tf.TensorShape([batch]).concatenate(s) for s in self._rnn.state_shapes]
        return (output if isinstance(output, list) else [output]) + states

    def compute_mask(self, inputs, mask=None):
        mask = tf.nest.flatten(mask)[0] if mask is not None else None
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            nones = state_structure.pack_states(self._rnn.cell, [None] * self._state_count())
            return [output_mask] + list(nones)
        return output_mask

    # -- serialization ------------------------------------------------------------------------------

    def get_config(self) -> dict:
        config = {
            "cell": cell_config.serialize_cell(self._rnn.cell, tf_keras),
            **self._options,
            "time_major": self._time_major,
        }
        if self._num_constants:
            config["num_constants"] = self._num_constants
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = tf_keras.regularizers.serialize(
                self.activity_regularizer
            )
        return {**super().get_config(), **config}

    @classmethod
    def from_config(cls, config: dict, custom_objects: Optional[dict] = None) -> "RNN":
        config = dict(config)
        cell = cell_config.deserialize_cell(config.pop("cell"), tf_keras, custom_objects)
        num_constants = config.pop("num_constants", 0)
        layer = cls(cell, **config)
        layer._num_constants = num_constants
        return layer


def _replicas_outside_run() -> int:
    """The replicas of the enclosing strategy when called outside its replicas, else 1."""
    if not tf.distribute.has_strategy() or not tf.distribute.in_cross_replica_context():
        return 1
    return tf.distribute.get_strategy().num_replicas_in_sync


def _global_batch(states: Sequence[tf.Variable]) -> Optional[int]:
    """The global batch of a stateful layer's states (`None` before they exist)."""
    if not states:
        return None
    replicas = 1
    if isinstance(states[0], tf.distribute.DistributedValues):
        replicas = states[0].distribute_strategy.num_replicas_in_sync  # one component each
    return int(states[0].shape[0]) * replicas


def _stack_name_scope(cell: Any):
    """tf-keras builds a stack's cells in the stack's name scope: `rnn/stacked_rnn_cells/
    lstm_cell/kernel:0` (each cell opens its own scope, as a single cell does)."""
    if isinstance(cell, StackedRNNCells):
        return tf.name_scope(cell.name)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _dtype_names_for_initial_state(cell: Any):
    """While the core creates or resets a stateful layer's states from a Keras `cell`.

    tf-keras asks the cell's `get_initial_state(inputs=None, batch_size=..., dtype=...)` for
    a stateful layer's states with the dtype's name (`"float32"`) where the core passes a
    `tf.DType`; cells that make NumPy arrays from it (`np.ones(..., dtype=dtype)`) need the
    name. The instance attribute shadows the method only inside the block.
    """
    original = getattr(cell, "get_initial_state", None)
    if cell is None or isinstance(cell, RNNCell) or not callable(original):
        yield
        return

    @functools.wraps(original)  # the core reads which arguments the cell's method takes
    def get_initial_state(*args, **kwargs):
        if kwargs.get("dtype") is not None:
            kwargs["dtype"] = tf.as_dtype(kwargs["dtype"]).name
        return original(*args, **kwargs)

    object.__setattr__(cell, "get_initial_state", get_initial_state)
    try:
        yield
    finally:
        object.__delattr__(cell, "get_initial_state")


def _swap_batch_and_time(tensor: tf.Tensor) -> tf.Tensor:
    return tf.transpose(tensor, [1, 0] + list(range(2, tensor.shape.rank)))


class _BuiltinRNN(RNN):
    """A tf-keras namesake: builds its tfrnn cell from the tf-keras cell arguments.

    The namesakes take their tf-keras twin's arguments, in its order: `units`; `activation`
    (and `recurrent_activation`), `use_bias`, the `*_initializer`, `*_regularizer` and
    `*_constraint` arguments (names, Keras objects, config dicts or callables), `dropout`,
    `recurrent_dropout`, `unit_forget_bias` (LSTM), `reset_after` (GRU); the layer options of
    `tfrnn.tf_keras.RNN`; `implementation` (kept in the config; tfrnn has one implementation);
    and `seed`, the seed of the initial weights and dropout masks (`None`: random).
    """

    _cell_class: type = RNNCell

    def __init__(self, arguments: dict):
        """`arguments`: the namesake constructor's `locals()`, its arguments by name."""
        arguments = {k: v for k, v in arguments.items() if k not in ("self", "__class__")}
        kwargs = arguments.pop("kwargs")
        kwargs.update({k: arguments.pop(k) for k in _LAYER_ARGUMENTS if k in arguments})
        seed = arguments.pop("seed")
        implementation = kwargs.pop("implementation", 2)
        if implementation not in (0, 1, 2):
            raise ValueError(f"implementation must be 1 or 2, got {implementation!r}")
        cell_kwargs, config = {"seed": seed}, {}
        for key, value in arguments.items():
            cell_kwargs[key], config[key] = cell_config.cell_argument(key, value, tf_keras)
        super().__init__(_CellFactory(self._cell_class, cell_kwargs), **kwargs)
        # As tf-keras' namesakes do: LSTM(3, trainable=False).cell.trainable is False.
        self.cell.trainable = kwargs.get("trainable", True)
        config.update(seed=seed, implementation=max(implementation, 1))
        cell_config.set_untracked(self, "_cell_config", config)

    implementation = property(lambda self: self._cell_config["implementation"])

    def get_config(self) -> dict:
        config = super().get_config()
        del config["cell"]
        activity = config.pop("activity_regularizer", None)
        return {**config, **self._cell_config, "activity_regularizer": activity}

    @classmethod
    def from_config(cls, config: dict, custom_objects: Optional[dict] = None) -> "RNN":
        return cls(**{k: v for k, v in config.items() if k != "cell"})


# The cell's arguments read through the layer, as on tf-keras' namesakes (HDF5 loading reads
# `reset_after`); one the cell lacks raises AttributeError.
for _name in (
    "units", "activation", "recurrent_activation", "use_bias", "unit_forget_bias", "reset_after",
    "dropout", "recurrent_dropout", "projection_units",
):  # fmt: skip
    setattr(_BuiltinRNN, _name, property(lambda self, name=_name: getattr(self.cell, name)))

# The namesakes' signatures are tf-keras', grouped a few arguments per line.


@_register
class SimpleRNN(_BuiltinRNN):
    """`tf_keras.layers.SimpleRNN` computed by tfrnn: same arguments, weights and config.

    `get_weights()` is `[kernel [features, units], recurrent_kernel [units, units],
    bias [units]]`, so `layer.set_weights(keras_layer.get_weights())` copies a tf-keras
    SimpleRNN. Arguments: see `_BuiltinRNN` and `RNN`.

    >>> tfrnn.tf_keras.SimpleRNN(8, return_sequences=True)(tf.ones([2, 5, 3])).shape
    TensorShape([2, 5, 8])
    """

    _cell_class = SimpleRNNCell

    def __init__(
        self, units: int, activation: Any = "tanh", use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform", recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None, recurrent_regularizer: Any = None,
        bias_regularizer: Any = None, activity_regularizer: Any = None,
        kernel_constraint: Any = None, recurrent_constraint: Any = None,
        bias_constraint: Any = None, dropout: float = 0.0, recurrent_dropout: float = 0.0,
        return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
        stateful: bool = False, unroll: bool = False, seed: Optional[int] = None, **kwargs,
    ):  # fmt: skip
        super().__init__(locals())


@_register
class LSTM(_BuiltinRNN):
    """`tf_keras.layers.LSTM` computed by tfrnn: same arguments, weights and config.

    `get_weights()` is `[kernel [features, 4 * units], recurrent_kernel [units, 4 * units],
    bias [4 * units]]` (gates i, f, c, o), so `layer.set_weights(keras_lstm.get_weights())`
    copies a tf-keras LSTM. The states are `[h, c]`. Arguments: see `_BuiltinRNN` and `RNN`.

    tfrnn's extension, `projection_units=P` (in the config; tf-keras has no such argument):
    h is projected to `P` as by `tfrnn.LSTMCell(projection_units=P)` (PyTorch's
    `proj_size`), adding `projection_kernel [units, P]` after the other weights, with
    `recurrent_kernel [P, 4 * units]`, h and the outputs `[batch, P]`, c `[batch, units]`.

    >>> outputs, h, c = tfrnn.tf_keras.LSTM(8, return_sequences=True, return_state=True)(
    ...     tf.ones([2, 5, 3]))
    >>> outputs.shape, c.shape
    (TensorShape([2, 5, 8]), TensorShape([2, 8]))
    """

    _cell_class = LSTMCell

    def __init__(
        self, units: int, activation: Any = "tanh", recurrent_activation: Any = "sigmoid",
        use_bias: bool = True, kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal", bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer: Any = None, recurrent_regularizer: Any = None,
        bias_regularizer: Any = None, activity_regularizer: Any = None,
        kernel_constraint: Any = None, recurrent_constraint: Any = None,
        bias_constraint: Any = None, dropout: float = 0.0, recurrent_dropout: float = 0.0,
        return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
        stateful: bool = False, time_major: bool = False, unroll: bool = False,
        seed: Optional[int] = None, projection_units: Optional[int] = None, **kwargs,
    ):  # fmt: skip
        super().__init__(locals())


@_register
class GRU(_BuiltinRNN):
    """`tf_keras.layers.GRU` computed by tfrnn: same arguments, weights and config.

    `get_weights()` is `[kernel [features, 3 * units], recurrent_kernel [units, 3 * units],
    bias]` (gates z, r, h; bias `[2, 3 * units]` with `reset_after=True`, else
    `[3 * units]`), so `layer.set_weights(keras_gru.get_weights())` copies a tf-keras GRU.
    Arguments: see `_BuiltinRNN` and `RNN`.

    >>> tfrnn.tf_keras.GRU(8, reset_after=False)(tf.ones([2, 5, 3])).shape
    TensorShape([2, 8])
    """

    _cell_class = GRUCell

    def __init__(
        self, units: int, activation: Any = "tanh", recurrent_activation: Any = "sigmoid",
        use_bias: bool = True, kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal", bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None, recurrent_regularizer: Any = None,
        bias_regularizer: Any = None, activity_regularizer: Any = None,
        kernel_constraint: Any = None, recurrent_constraint: Any = None,
        bias_constraint: Any = None, dropout: float = 0.0, recurrent_dropout: float = 0.0,
        return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
        stateful: bool = False, unroll: bool = False, time_major: bool = False,
        reset_after: bool = True, seed: Optional[int] = None, **kwargs,
    ):  # fmt: skip
        super().__init__(locals())
