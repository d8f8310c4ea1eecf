"""`tfrnn.keras.RNN`: a Keras 3 recurrent layer whose time loop is a `tfrnn.RNN`.

The layer owns a `tfrnn.RNN` core and forwards its calls to it: the loop, its XLA
compilation, masks, `initial_state`, `constants` and stateful states stay in the core. This
module adapts Keras 3's side of the contract — static output shapes and dtypes for symbolic
use, masks in and out, the weight layout of Keras' own layers (`cell_layers`), dtype
policies, `reset_state`, and `get_config`/`from_config` (registered under the package
`tfrnn`, so `keras.models.load_model` needs no `custom_objects` once `tfrnn` is imported).
"""

from __future__ import annotations

from typing import Any, Optional

import keras
import tensorflow as tf

from tfrnn._core.arguments import check_bool
from tfrnn._keras_common import cell_config
from tfrnn._keras_common import flavours
from tfrnn._keras_common import weights as keras_weights
from tfrnn.keras import cell_layers
from tfrnn.keras import keras_internals
from tfrnn.rnn import RNN as CoreRNN
from tfrnn.stacked_cells import StackedRNNCells

__all__ = ["RNN"]

register = keras.saving.register_keras_serializable(package="tfrnn")


class CellFactory:
    """Creates a namesake layer's tfrnn cell once the layer knows its dtype policy."""

    def __init__(self, cell_class: type, arguments: dict):
        self.cell_class = cell_class
        self.arguments = arguments

    def __call__(self, policy: Any) -> Any:
        return self.cell_class(
            **self.arguments,
            dtype=policy.variable_dtype,
            compute_dtype=policy.compute_dtype,
            name=cell_config.CELL_NAMES[self.cell_class],
        )


@register
class RNN(keras.layers.Layer):
    """A Keras 3 recurrent layer that runs a cell with `tfrnn.RNN`, as `keras.layers.RNN` does.

    Inputs are `[batch, timesteps, features...]`; the output is `[batch, output_size]`, or
    `[batch, timesteps, output_size]` with `return_sequences=True`; with `return_state=True`
    the layer returns `(output, *final_states)` — for stacked cells the states grouped per
    cell as Keras 3 does (`(output, [h0, c0], h1)` for an LSTM under a GRU). The mask Keras
    attaches (`Embedding(mask_zero=True)`, `Masking`) is used also when `initial_state` is
    passed (Keras 3's own RNN then drops it), and the output mask is Keras': the input mask
    with `return_sequences`, none otherwise. `initial_state=` and `constants=` may be
    symbolic; Keras 3 dropped `constants`, tfrnn keeps it.

    Stateful layers (`stateful=True`) need a fixed batch (`keras.Input(..., batch_size=B)`);
    the states (`states`) carry over between batches of `fit(shuffle=False)`, `predict` and
    calls; `reset_state()` restores the initial state and `reset_state(states=[...])` sets
    given values (validated; nothing changes on error); `tfrnn.keras.reset_state(model)`
    resets a whole model. As in Keras 3 the states are not in `weights`; unlike Keras 3 they
    are saved (`.keras`, `.weights.h5`), exported and checkpointed. An explicit
    `initial_state` wins over the stored state for its call (see `tfrnn.RNN`).

    Outputs and states have the layer's compute dtype, variables (and stored states) its
    variable dtype, under a `mixed_float16`/`mixed_bfloat16` policy too.

    >>> x = keras.Input((None, 5))
    >>> y = tfrnn.keras.RNN([tfrnn.LSTMCell(8), tfrnn.GRUCell(4)])(x)
    >>> keras.Model(x, y).output_shape
    (None, 4)

    Args:
      cell: any cell `tfrnn.RNN` takes: a Keras 3 cell (`keras.layers.LSTMCell`, the Keras
        docs' `MinimalRNNCell`), a tfrnn cell, a `tf.Module` with `call` and `state_size`
        (variables created in `__init__` or `build`), or a list of cells to stack.
      return_sequences: return every step's output instead of the last one.
      return_state: also return the final states.
      go_backwards: process the sequence backwards; the returned sequence is reversed.
      stateful: carry the final states of each batch over to the next (see above).
      unroll: unroll the loop (needs a static number of timesteps).
      zero_output_for_mask: zeros at masked steps of the returned sequence.
      jit_compile: compile the time loop with XLA (also inside Keras' own XLA-compiled step).
      **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`, `trainable`,
        `activity_regularizer`, ...).
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(cell, CellFactory):
            cell = cell(self.dtype_policy)
        options = dict(
            return_sequences=return_sequences, return_state=return_state,
            go_backwards=go_backwards, stateful=stateful, unroll=unroll,
            zero_output_for_mask=zero_output_for_mask, jit_compile=jit_compile,
        )  # fmt: skip
        cell_config.set_untracked(self, "_options", options)
        cell_config.set_untracked(self, "_cell_argument", cell)
        core_cell, self.cell = cell_layers.split_cell(cell)
        self._core = CoreRNN(core_cell, **options)
        self.state_weights = cell_layers.StateWeights(name="state_weights")
        self.supports_masking = True

    # -- options (read-only, except what keras.layers.Bidirectional sets) -----------------------

    return_sequences = property(lambda self: self._core.return_sequences)
    return_state = property(lambda self: self._core.return_state)
    go_backwards = property(lambda self: self._core.go_backwards)
    stateful = property(lambda self: self._core.stateful)
    unroll = property(lambda self: self._core.unroll)
    jit_compile = property(lambda self: self._core.jit_compile)

    @property
    def zero_output_for_mask(self) -> bool:
        return self._core.zero_output_for_mask

    @zero_output_for_mask.setter
    def zero_output_for_mask(self, value: bool) -> None:
        # Bidirectional sets this on its fresh copies; the core fixes its options when it is
        # created, so a new core takes over the same cell before anything is built.
        value = check_bool(value, "zero_output_for_mask")
        if value == self._core.zero_output_for_mask:
            return
        if self.built:
            raise ValueError(f"zero_output_for_mask of {self.name} cannot change once it is built")
        self._options["zero_output_for_mask"] = value
        self._core = CoreRNN(self._core.cell, **self._options)

    @property
    def supports_jit(self) -> bool:
        """Whether Keras may compile a whole training step with this layer in XLA.

        Only for cells on tfrnn's fast loop (built-in cells without recurrent dropout): TF
        2.21 cannot differentiate any other loop inside a caller's XLA function when the
        batch size is unknown while tracing (`fit`'s last partial batch: "TensorList input
        for ZerosLike op is an uninitialized list"). Keras then compiles the step without XLA
        (`jit_compile="auto"`, or `True` with a warning); the time loop itself still compiles.
        """
        return self.__dict__.get("_supports_jit", True) and _on_fast_loop(self._core.cell)

    @supports_jit.setter
    def supports_jit(self, value: bool) -> None:
        self.__dict__["_supports_jit"] = bool(value)

    @property
    def core(self) -> CoreRNN:
        """The `tfrnn.RNN` that computes this layer (export and TFLite trace it)."""
        return self._core

    @property
    def states(self) -> list:
        """A stateful layer's states, Keras variables `[batch, *state_shape]` (empty before)."""
        return list(self.state_weights.state_variables)

    @property
    def weights(self) -> list:
        """The cell's weights in Keras 3's order (a stateful layer's states are not weights)."""
        states = {id(v) for v in self.state_weights.state_variables}
        return [w for w in super().weights if id(w) not in states]

    def set_weights(self, weights) -> None:
        """Assigns `weights` (NumPy arrays in the order of `get_weights()`); nothing changes on error."""
        keras_weights.assign_checked(self.weights, list(weights), "weights", self.name)

    # -- building and calling ---------------------------------------------------------------

    def _sequence_shape(self, sequences_shape: Any) -> tf.TensorShape:
        shape = tf.TensorShape(sequences_shape)
        if shape.rank is None or shape.rank < 3:
            raise ValueError(
                f"inputs of {self.name} must have rank >= 3, [batch, timesteps, features...], "
                f"got shape {tuple(shape.as_list()) if shape.rank is not None else None}"
            )
        return shape

    def build(self, sequences_shape, initial_state_shape=None, constants_shape=None) -> None:
        """Creates the cell's variables (and a stateful layer's states) for `sequences_shape`."""
        shape = self._sequence_shape(sequences_shape)
        if self.stateful and shape[0] is None:
            raise ValueError(
                f"{self.name} is stateful, so it needs a fixed batch size, got inputs of shape "
                f"{tuple(shape.as_list())} with an unknown batch size; pass batch_size=... to "
                "keras.Input"
            )
        with keras_internals.outside_stateless_scope(), tf.init_scope():
            self._core.build(shape)
        cell_layers.adopt_variables(self.cell)
        self.state_weights.adopt(self._core.states)

    def __call__(self, *args, **kwargs):
        for argument, value in zip(("inputs", "initial_state", "constants"), args):
            flavours.check_tensors(tf.nest.flatten(value), argument, type(self).__name__, "keras")
        for argument in ("inputs", "sequences", "initial_state", "constants", "mask"):
            values = tf.nest.flatten(kwargs.get(argument))
            flavours.check_tensors(values, argument, type(self).__name__, "keras")
        return super().__call__(*args, **kwargs)

    def call(self, sequences, initial_state=None, mask=None, training=None, constants=None):
        return self._call(sequences, initial_state, mask, training, constants)

    # Keras traces its steps with autograph; the adapter and the core decide in Python.
    @tf.autograph.experimental.do_not_convert
    def _call(self, sequences, initial_state, mask, training, constants):
        if keras_internals.in_symbolic_scope():
            return self._placeholder_outputs(sequences)
        if mask is None:
            mask = keras_internals.keras_mask(sequences)
        if mask is not None:
            mask = tf.nest.flatten(mask)[0]
        if self.stateful and self.states and sequences.shape[0] is None:
            # Keras feeds batches of unknown static size; the states fix it.
            batch = self.states[0].shape[0]
            sequences = tf.ensure_shape(sequences, [batch] + [None] * (sequences.shape.rank - 1))
        results = self._core(
            sequences, mask=mask, initial_state=initial_state, constants=constants,
            training=bool(training),
        )  # fmt: skip
        return self._keras_outputs(results)

    def _keras_outputs(self, results: Any) -> Any:
        """The core's results in the compute dtype, states grouped per cell as in Keras 3."""
        dtype = self.compute_dtype
        results = [tf.cast(t, dtype) if t.dtype != dtype else t for t in tf.nest.flatten(results)]
        if not self.return_state:
            return results[0]
        return (results[0], *self._group_states(results[1:]))

    def _group_states(self, flat: list) -> list:
        groups = getattr(self._core.cell, "state_groups", None)
        if not isinstance(self._core.cell, StackedRNNCells) or not callable(groups):
            return list(flat)
        grouped, start = [], 0
        for count, adapter in zip(groups(), self._core.cell.adapters):
            states = list(flat[start : start + count])
            start += count
            grouped.append(states[0] if _single_state(adapter.cell) else states)
        return grouped

    def _placeholder_outputs(self, sequences: tf.Tensor) -> Any:
        """Zeros of the output shapes, for Keras tracing a model only for its shapes.

        Keras builds a subclassed model by tracing it in a scratch graph: the core need not
        trace (and keep) its loop there, and Keras 3 cells' variables may still be deferred.
        """
        batch = tf.shape(sequences)[:1]
        time = tf.shape(sequences)[1:2]

        def zeros(shape: tf.TensorShape, leading: list, static: list) -> tf.Tensor:
            dims = tf.concat(leading + [tf.constant(shape.as_list(), tf.int32)], 0)
            tensor = tf.zeros(dims, self.compute_dtype)
            tensor.set_shape(static + shape.as_list())
            return tensor

        static = sequences.shape.as_list()
        if self.return_sequences:
            output = zeros(self._core.output_size, [batch, time], static[:2])
        else:
            output = zeros(self._core.output_size, [batch], static[:1])
        if not self.return_state:
            return output
        states = [zeros(s, [batch], static[:1]) for s in self._core.state_shapes]
        return (output, *self._group_states(states))

    def compute_output_shape(self, sequences_shape, initial_state_shape=None, constants_shape=None):
        """The static output shape(s) for inputs of `sequences_shape` (tuples, as Keras 3)."""
        shape = self._sequence_shape(sequences_shape)
        batch, time = shape[0], shape[1]
        leading = (batch, time) if self.return_sequences else (batch,)
        output = leading + tuple(self._core.output_size.as_list())
        if not self.return_state:
            return output
        states = [(batch,) + tuple(s.as_list()) for s in self._core.state_shapes]
        return (output, *self._group_states(states))

    def compute_mask(self, sequences, mask=None):
        mask = tf.nest.flatten(mask)[0] if mask is not None else None
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * len(self._group_states(self._core.state_shapes))
        return output_mask

    def reset_state(self, states: Any = None) -> None:
        """Sets a stateful layer's states to the cell's initial state, or to `states`.

        A layer that is not stateful has nothing to reset (a no-op, as in Keras 3).

        Args:
          states: `None`, or one array per state, `[batch, *state_shape]` each (for stacked
            cells flat or nested per cell). Nothing changes if they are invalid. Before the
            layer is built this also fixes the batch size.
        """
        if not self.stateful:
            if states is not None:
                raise ValueError(
                    f"reset_state(states=...) is for stateful layers; {self.name} was created "
                    "with stateful=False"
                )
            return
        if states is None and not self._core.states:
            return  # not built yet: the states start out reset
        with keras_internals.outside_stateless_scope():
            self._core.reset_state(states)
        self.state_weights.adopt(self._core.states)

    def reset_states(self, states: Any = None) -> None:
        """Keras 2's name for `reset_state`."""
        self.reset_state(states)

    # -- serialization ------------------------------------------------------------------------

    def get_config(self) -> dict:
        config = {"cell": cell_config.serialize_cell(self._cell_argument, keras), **self._options}
        return {**super().get_config(), **config}

    @classmethod
    def from_config(cls, config: dict, custom_objects: Optional[dict] = None) -> "RNN":
        config = dict(config)
        cell = cell_config.deserialize_cell(config.pop("cell"), keras, custom_objects)
        return cls(cell, **config)


def _on_fast_loop(cell: Any) -> bool:
    """Whether training calls of a core with this cell run tfrnn's fast loop."""
    spec, ok = getattr(cell, "fast_loop_spec", None), getattr(cell, "fast_loop_ok", None)
    return callable(spec) and callable(ok) and ok(True) and spec() is not None


def _single_state(cell: Any) -> bool:
    """Whether Keras 3 shows this cell's states as one tensor (`state_size` not a list)."""
    return not isinstance(getattr(cell, "state_size", None), (list, tuple))
