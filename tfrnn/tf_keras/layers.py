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

from tfrnn._keras_common import cell_config
from tfrnn._keras_common import flavours
from tfrnn._keras_common import weights as keras_weights
from tfrnn.cell import RNNCell
from tfrnn._core import trace_context
from tfrnn._core.arguments import check_bool
from tfrnn.gru_cell import GRUCell
from tfrnn.lstm_cell import LSTMCell
from tfrnn.rnn import RNN as CoreRNN
from tfrnn.simple_rnn_cell import SimpleRNNCell

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
    `time_major=True`); the output is `[batch, output_size]`, or `[batch, timesteps,
    output_size]` with `return_sequences=True`; with `return_state=True` the layer returns
    `[output, *final_states]`. The layer consumes the mask Keras propagates (`Embedding(
    mask_zero=True)`, `Masking`) and propagates its output mask as tf-keras does (the input
    mask when `return_sequences`, none otherwise). `initial_state=` and `constants=` may be
    symbolic Keras tensors.

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
        self._rnn = CoreRNN(cell, **self._options)
        self._time_major = check_bool(time_major, "time_major")
        self.stateful = self._rnn.stateful
        self.supports_masking = True
        # tf-keras tracks layer cells as sublayers: their own losses then reach `losses`.
        self._keras_cells = [
            c for c in keras_weights.flat_cells(self._rnn.cell) if isinstance(c, tf_keras.layers.Layer)
        ]
        self._num_constants = 0
        self._regularization_added = False
        self._states_deferred = False

    # -- options (read-only, except what tf_keras.layers.Bidirectional sets) ---------------------

    cell = property(lambda self: self._rnn.cell, doc="The cell (a list of cells is stacked).")
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
            self._rnn = CoreRNN(self._rnn.cell, **self._options)

    @property
    def states(self) -> list[tf.Variable]:
        """A stateful layer's state variables, `[batch, *state_shape]` each (empty until built)."""
        return self._rnn.states

    # -- weights ---------------------------------------------------------------------------------

    def _cell_weights(self) -> tuple[list, list]:
        return keras_weights.cell_weights(self._rnn)

    @property
    def trainable_weights(self) -> list[tf.Variable]:
        if not self.trainable:
            return []
        return self._dedup_weights(self._trainable_weights + self._cell_weights()[0])

    @property
    def non_trainable_weights(self) -> list[tf.Variable]:
        trainable, non_trainable = self._cell_weights()
        if self.trainable:
            return self._dedup_weights(self._non_trainable_weights + non_trainable)
        own = self._trainable_weights + self._non_trainable_weights
        return self._dedup_weights(own + trainable + non_trainable)

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Assigns `weights` (NumPy arrays in the order of `get_weights()`); nothing changes on error."""
        keras_weights.assign_checked(self.weights, list(weights), "weights", self.name)

    def save_own_variables(self, store) -> None:
        """Saves the weights and a stateful layer's states (`.keras` format)."""
        for index, variable in enumerate(self._saved_variables()):
            store[str(index)] = variable.numpy()

    def load_own_variables(self, store) -> None:
        """Loads what `save_own_variables` saved; nothing changes on error."""
        values = [store[str(index)] for index in range(len(store.keys()))]
        keras_weights.assign_checked(self._saved_variables(), values, "saved variables", self.name)

    def _saved_variables(self) -> list[tf.Variable]:
        trainable, non_trainable = self._cell_weights()
        own = self._trainable_weights + self._non_trainable_weights
        return self._dedup_weights(own + trainable + non_trainable) + self.states

    # -- building and calling ---------------------------------------------------------------------

    def _core_input_shape(self, input_shape: Any) -> tf.TensorShape:
        """The `[batch, timesteps, ...]` shape of the sequence among `input_shape`."""
        if isinstance(input_shape, (list, tuple)) and input_shape:
            first = input_shape[0]
            if isinstance(first, (list, tuple, tf.TensorShape)):
                input_shape = first  # [inputs, *initial_state, *constants]
        shape = tf.TensorShape(input_shape)
        if shape.rank is None or shape.rank < 3:
            layout = "timesteps, batch" if self._time_major else "batch, timesteps"
            raise ValueError(
                f"inputs of {self.name} must have rank >= 3, [{layout}, features...], got "
                f"input_shape {shape}"
            )
        if self._time_major:
            shape = tf.TensorShape([shape[1], shape[0]]).concatenate(shape[2:])
        return shape

    def build(self, input_shape: Any) -> None:
        """Creates the cell's variables (and a stateful layer's states) for `input_shape`."""
        shape = self._core_input_shape(input_shape)
        if self.stateful and shape[0] is None:
            raise ValueError(
                f"{self.name} is stateful, so it needs a fixed batch size, got input_shape "
                f"{tf.TensorShape(input_shape)} with an unknown batch size; pass "
                "batch_size=... to tf_keras.Input (or batch_input_shape=... to the first layer)"
            )
        if self.stateful and _replicas_outside_run() > 1:
            # tf-keras builds models under a strategy outside its replicas, with a batch that
            # may be global (batch_input_shape) or per replica (Input divides batch_size): the
            # states wait for the first call, whose batch says which (see _call).
            with trace_context.scope(ignore_states=True):
                self._rnn.build(shape)
            self._states_deferred = True
        else:
            self._rnn.build(shape)
        if not self._regularization_added:
            self._regularization_added = True
            regularized = getattr(self._rnn.cell, "regularization_losses", None)
            for index in range(len(regularized()) if callable(regularized) else 0):
                # Callables: Keras re-evaluates them at every step, like weight regularizers.
                self.add_loss(functools.partial(_regularization_term, self._rnn.cell, index))
        super().build(input_shape)

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

    def __call__(self, *args, **kwargs):
        # A Keras 3 tensor would fail deep inside tf-keras; say which adapter to use instead.
        for argument, value in [*zip(("inputs",), args), *kwargs.items()]:
            flavours.check_tensors(tf.nest.flatten(value), argument, type(self).__name__, "tf_keras")
        return super().__call__(*args, **kwargs)

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
            inputs = _swap_batch_and_time(inputs)
            mask = None if mask is None else tf.transpose(mask)
        if self.stateful and self.states and inputs.shape[0] is None:
            # Keras feeds batches of unknown static size; the states fix it.
            batch = self.states[0].shape[0]
            inputs = tf.ensure_shape(inputs, [batch] + [None] * (inputs.shape.rank - 1))
        if self._states_deferred and not self.states and inputs.shape[0] is None:
            if not tf.distribute.in_cross_replica_context():
                raise ValueError(
                    f"{self.name} is stateful under {type(tf.distribute.get_strategy()).__name__}"
                    ", so its states are created at its first call inside the replicas, but "
                    "that call got batches of unknown size; give each replica batches of a "
                    "fixed size (strategy.distribute_datasets_from_function, batching each "
                    "replica's dataset with drop_remainder=True), or create the states first, "
                    "outside the replicas: reset_states(states=[...]) with the global batch"
                )
        shapes_only = trace_context.scope(ignore_states=True) if self._shapes_only(inputs) else contextlib.nullcontext()
        with shapes_only:
            results = self._rnn(
                inputs,
                mask=mask,
                initial_state=initial_state,
                constants=constants,
                training=training,
            )
        if self._time_major and self.return_sequences:
            if self.return_state:
                return [_swap_batch_and_time(results[0])] + results[1:]
            return _swap_batch_and_time(results)
        return results

    def _shapes_only(self, inputs: tf.Tensor) -> bool:
        """Whether this call only gives a model its shapes (the core then ignores the states).

        Under a strategy, tf-keras traces a functional model outside the replicas with a batch
        that may be per replica: a stateful layer's call there runs from the initial state.
        Inside strategy.run, and for the global batch of existing states, it runs with them.
        """
        if not (self.stateful and not tf.executing_eagerly() and _replicas_outside_run() > 1):
            return False
        global_batch = _global_batch(self.states)
        return global_batch is None or inputs.shape[0] != global_batch

    def compute_output_shape(self, input_shape: Any):
        """The static output shape(s) for inputs of `input_shape`."""
        shape = self._core_input_shape(input_shape)
        batch, time = shape[0], shape[1]
        output_shape = self._rnn.output_size
        if self.return_sequences:
            leading = [time, batch] if self._time_major else [batch, time]
            output = tf.TensorShape(leading).concatenate(output_shape)
        else:
            output = tf.TensorShape([batch]).concatenate(output_shape)
        if not self.return_state:
            return output
        return [output] + [tf.TensorShape([batch]).concatenate(s) for s in self._rnn.state_shapes]

    def compute_mask(self, inputs, mask=None):
        mask = tf.nest.flatten(mask)[0] if mask is not None else None
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * len(self._rnn.state_shapes)
        return output_mask

    def reset_states(self, states: Any = None) -> None:
        """Sets a stateful layer's states to the cell's initial state, or to `states`.

        Args:
          states: `None`, or one array per state, `[batch, *state_shape]` each (for stacked
            cells flat or nested per cell). Nothing changes if they are invalid.
        """
        if states is None and self._states_deferred and not self.states:
            return  # under a strategy before the first call: the states start out reset
        self._rnn.reset_state(states)

    reset_state = reset_states  # Keras 3's name

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


def _swap_batch_and_time(tensor: tf.Tensor) -> tf.Tensor:
    return tf.transpose(tensor, [1, 0] + list(range(2, tensor.shape.rank)))


def _regularization_term(cell: Any, index: int) -> tf.Tensor:
    return cell.regularization_losses()[index]


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
    "dropout", "recurrent_dropout",
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
        seed: Optional[int] = None, **kwargs,
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
