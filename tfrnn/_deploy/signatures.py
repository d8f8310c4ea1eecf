"""The functions an export gives a model built on `tfrnn.RNN`: full sequence, step, states.

`ModelSignatures` wraps any callable model that runs `tfrnn.RNN`s — a `tfrnn.RNN`, a
`tf.Module` around several of them, a Keras 3 model of `tfrnn.keras` layers or a tf-keras
model of `tfrnn.tf_keras` layers — and traces:

* `serving_default(inputs [batch, time, features...][, mask [batch, time]])`: the whole
  sequence, as calling the model does (a stateful model reads and updates its states);
  results `outputs` and, when the model returns states (a list `[output, *states]`),
  `state_0 ... state_{n-1}`: every RNN's final states, flat, in call order;
* `step(inputs [batch, features...], state_0, ...[, mask [batch]])`: one timestep with the
  states passed in and returned (`outputs`, `state_0`, ...), for serving, where the server
  keeps no per-client state. Every RNN of the model starts from its slice of the given
  states and returns its final states (see `StreamCapture`); stateful RNNs'
  variables are neither read nor written. The model's own result for a one-step sequence is
  `outputs`, its time axis dropped when the full-sequence result has one;
* `initial_state(batch_size)`: the states a new stream starts from (each cell's
  `get_initial_state`, zeros by default);
* `reset_state()` (stateful models): sets the state variables to their initial states.

A model whose RNNs run backwards cannot be streamed forwards one step at a time; it gets
no `step` (asking for one is an error that says so).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Iterator, Optional, Sequence

import tensorflow as tf

from tfrnn._core import trace_context
from tfrnn._core.arguments import accepts_argument
from tfrnn._deploy import composite_lstm
from tfrnn.bidirectional import Bidirectional


@dataclasses.dataclass(frozen=True)
class TraceOptions:
    """How an export traces a model's RNNs."""

    jit_compile: Optional[bool] = None
    """`None`: each RNN's own choice; `True`/`False`: for all of them."""
    tflite: bool = False
    """Builtin-only loops for the TFLite converter."""
    fuse_lstm: bool = True
    """With `tflite`: plain LSTM cells as the converter's composite LSTM function."""
    probe_cell_state: bool = False
    """With `tflite`: run those LSTMs unfused and record their largest |c| (for checks)."""


@contextlib.contextmanager
def traced_with(options: TraceOptions, **changes: Any) -> Iterator[trace_context.TraceContext]:
    """The trace context `options` ask for (with `changes`, e.g. a stream or an observer)."""
    substitute = None
    if options.tflite and options.probe_cell_state:
        substitute = composite_lstm.CellStateProbe()
    elif options.tflite and options.fuse_lstm:
        substitute = composite_lstm.FusedLSTM()
    with trace_context.scope(
        jit_compile=options.jit_compile,
        builtin_only=options.tflite,
        substitute=substitute,
        **changes,
    ) as context:
        yield context


class StreamCapture:
    """Feeds explicit initial states to the RNNs of a model and collects their final states.

    A `trace_context.StateFeed` whose `record` is the trace's observer.

    Args:
      initial_states: one list of state tensors per RNN call, in call order; `None` only
        records (to discover the RNNs of a model, their state shapes and dtypes).
    """

    def __init__(self, initial_states: Optional[list[list[tf.Tensor]]] = None):
        self.initial_states = initial_states
        self.records: list[trace_context.CallRecord] = []

    def next_initial_state(self) -> Optional[list[tf.Tensor]]:
        """The states the next RNN call starts from (`None` when only recording)."""
        if self.initial_states is None:
            return None
        index = len(self.records)
        if index >= len(self.initial_states):
            raise ValueError(
                f"the model called {index + 1} RNNs while streaming, but {len(self.initial_states)} "
                "were found when it was first traced; a model must call the same RNNs on "
                "every call to be exported with a step signature"
            )
        return self.initial_states[index]

    def record(self, record: trace_context.CallRecord) -> None:
        self.records.append(record)

    @property
    def final_states(self) -> list[tf.Tensor]:
        """All final states, flat, in call order."""
        return [s for r in self.records for s in r.final_states]


def call_model(model: Any, inputs: tf.Tensor, mask: Optional[tf.Tensor]) -> Any:
    """`model(inputs[, mask=mask][, training=False])`, for modules and Keras models alike."""
    kwargs = {}
    if mask is not None:
        kwargs["mask"] = mask
    if accepts_argument(getattr(model, "call", model), "training") or accepts_argument(model, "training"):
        kwargs["training"] = False
    return model(inputs, **kwargs)


def split_result(result: Any) -> tuple[dict, bool]:
    """`({name: tensor}, returns_states)` of a model's result.

    A tensor is `outputs`; a list or tuple is `[output, *states]`; a dict keeps its keys.
    """
    if isinstance(result, dict):
        return {str(k): tf.convert_to_tensor(v) for k, v in result.items()}, False
    if isinstance(result, (list, tuple)):
        return {"outputs": tf.convert_to_tensor(result[0])}, len(result) > 1
    return {"outputs": tf.convert_to_tensor(result)}, False


def state_name(index: int) -> str:
    return f"state_{index}"


class ModelSignatures:
    """Traces a model's export signatures (see the module docstring).

    Args:
      model: the model; called as `model(inputs[, mask=mask][, training=False])`.
      input_spec: `[batch or None, time or None, features...]` and dtype of the inputs.
      mask: whether the signatures take a mask.
    """

    def __init__(self, model: Any, input_spec: tf.TensorSpec, mask: bool = False):
        if input_spec.shape.rank is None or input_spec.shape.rank < 2:
            raise ValueError(
                "input_spec must be [batch, timesteps, features...] (or [batch, timesteps] "
                f"for token ids), got shape {input_spec.shape}"
            )
        if not input_spec.shape[2:].is_fully_defined():
            raise ValueError(
                f"input_spec must give the feature shape, got {input_spec.shape} (only batch "
                "and timesteps may be None)"
            )
        if isinstance(model, Bidirectional) and model.merge_mode is None:
            raise ValueError(
                "a tfrnn.Bidirectional with merge_mode=None returns two outputs, and a signature "
                "has one 'outputs'; export it with a merge_mode, or a module around it that "
                "returns a dict of the two"
            )
        self.model = model
        self.input_spec = tf.TensorSpec(
            tf.TensorShape([input_spec.shape[0], None]).concatenate(input_spec.shape[2:]),
            input_spec.dtype,
        )
        self.mask = bool(mask)
        self._discover()

    # -- what the model holds ------------------------------------------------------------------

    def _discover(self) -> None:
        """Traces the model once to find its RNNs, their states and its result structure."""
        # Traced as a stream that only records: stateful RNNs take any batch, move no state.
        capture = StreamCapture()
        returns_states = []

        def trace(inputs, mask=None):
            with trace_context.scope(jit_compile=False, stream=capture, observer=capture.record):
                named, has_states = split_result(call_model(self.model, inputs, mask))
            returns_states.append(has_states)
            return named

        specs = [self.input_spec] + ([self.mask_spec(self.input_spec.shape[0])] if self.mask else [])
        try:
            concrete = tf.function(trace, autograph=False).get_concrete_function(*specs)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"the model cannot be called on inputs of shape {self.input_spec.shape} "
                f"({self.input_spec.dtype.name}){' with a mask' if self.mask else ''}: {error}"
            ) from error
        self.records = capture.records
        if not self.records:
            raise ValueError(
                f"the model ({type(self.model).__name__}) calls no tfrnn.RNN, so tfrnn "
                "cannot export its streaming step or states"
            )
        # A result with a time axis has it unknown when the inputs' time is unknown.
        self.sequence_outputs = {
            name: t.shape.rank is not None and t.shape.rank >= 2 and t.shape[1] is None
            for name, t in concrete.structured_outputs.items()
        }
        self.output_names = list(concrete.structured_outputs)
        self.returns_states = returns_states[0]
        self.state_shapes = [shape for r in self.records for shape in r.state_shapes]
        self.state_dtypes = [r.dtype for r in self.records for _ in r.state_shapes]
        self.stateful_rnns = [r.rnn for r in self.records if getattr(r.rnn, "stateful", False)]
        self.backwards = [r.rnn for r in self.records if getattr(r.rnn, "go_backwards", False)]

    @property
    def stateful(self) -> bool:
        return bool(self.stateful_rnns)

    @property
    def streamable(self) -> bool:
        return not self.backwards

    @property
    def num_states(self) -> int:
        return len(self.state_shapes)

    def mask_spec(self, batch: Optional[int] = None, time: bool = True) -> tf.TensorSpec:
        shape = [batch, None] if time else [batch]
        return tf.TensorSpec(shape, tf.bool, name="mask")

    def state_specs(self, batch: Optional[int]) -> list[tf.TensorSpec]:
        return [
            tf.TensorSpec([batch] + shape.as_list(), dtype, name=state_name(i))
            for i, (shape, dtype) in enumerate(zip(self.state_shapes, self.state_dtypes))
        ]

    def stateful_batch(self) -> Optional[int]:
        """The batch size the stateful RNNs hold states for (`None` if no RNN is stateful)."""
        sizes = {rnn.states[0].shape[0] for rnn in self.stateful_rnns if rnn.states}
        if len(sizes) > 1:
            raise ValueError(f"the model's stateful RNNs hold states for different batch sizes {sorted(sizes)}")
        return sizes.pop() if sizes else None

    def _sequence_specs(self, batch: Optional[int]) -> list[tf.TensorSpec]:
        """`inputs` `[batch, None, ...]` (and `mask` `[batch, None]`) of a whole sequence."""
        shape = [batch] + self.input_spec.shape[1:].as_list()
        spec = tf.TensorSpec(shape, self.input_spec.dtype, name="inputs")
        return [spec] + ([self.mask_spec(batch)] if self.mask else [])

    def _grouped(self, flat: Sequence[tf.Tensor]) -> list[list[tf.Tensor]]:
        groups, offset = [], 0
        for record in self.records:
            count = len(record.state_shapes)
            groups.append(list(flat[offset : offset + count]))
            offset += count
        return groups

    # -- the signature functions -----------------------------------------------------------------

    def serving_default(self, options: TraceOptions, batch: Optional[int] = None) -> Callable:
        """The full-sequence function, a `tf.function` with its input signature."""
        specs = self._sequence_specs(batch)

        def serving_default(inputs, mask=None):
            records: list = []
            with traced_with(options, observer=records.append):
                named, has_states = split_result(call_model(self.model, inputs, mask))
            if has_states:
                flat = [s for r in records for s in r.final_states]
                named.update({state_name(i): s for i, s in enumerate(flat)})
            return named

        return tf.function(serving_default, input_signature=specs, autograph=False, jit_compile=options.jit_compile or None)

    def probe(self, options: TraceOptions, batch: Optional[int] = None) -> Callable:
        """For TFLite checks: the largest |c| of every LSTM the converter would fuse.

        `options` must have `probe_cell_state=True`; the result is
        `{"max_abs_cell_state": [num_fused_lstms]}` (empty if none would fuse).
        """
        specs = self._sequence_specs(batch)

        def probe(inputs, mask=None):
            with traced_with(options) as context:
                call_model(self.model, inputs, mask)
            found = context.substitute.max_abs_cell_state
            stacked = tf.stack(found) if found else tf.zeros([0], self.input_spec.dtype)
            return {"max_abs_cell_state": stacked}

        return tf.function(probe, input_signature=specs, autograph=False)

    def step(self, options: TraceOptions, batch: Optional[int] = None) -> Callable:
        """The one-timestep function with explicit states."""
        if not self.streamable:
            names = ", ".join(getattr(r, "name", type(r).__name__) for r in self.backwards)
            raise ValueError(
                f"a step signature streams forwards one timestep at a time, but the model's "
                f"RNNs {names} run with go_backwards=True; export with step=False"
            )
        features = self.input_spec.shape[2:].as_list()
        specs = [tf.TensorSpec([batch] + features, self.input_spec.dtype, name="inputs")]
        specs += self.state_specs(batch)
        if self.mask:
            specs.append(self.mask_spec(batch, time=False))
        num_states = self.num_states

        def step(inputs, *args):
            states = list(args[:num_states])
            mask = args[num_states][:, None] if self.mask else None
            capture = StreamCapture(self._grouped(states))
            with traced_with(options, stream=capture, observer=capture.record):
                named, _ = split_result(call_model(self.model, inputs[:, None], mask))
            named = {
                name: tensor[:, 0] if self.sequence_outputs.get(name) else tensor
                for name, tensor in named.items()
            }
            named.update({state_name(i): s for i, s in enumerate(capture.final_states)})
            return named

        return tf.function(step, input_signature=specs, autograph=False, jit_compile=options.jit_compile or None)

    def initial_state(self) -> Callable:
        """`initial_state(batch_size)`: the states a new stream starts from."""

        def initial_state(batch_size):
            flat = []
            for record in self.records:
                flat.extend(record.rnn.get_initial_state(batch_size, record.dtype))
            return {state_name(i): s for i, s in enumerate(flat)}

        return tf.function(
            initial_state,
            input_signature=[tf.TensorSpec([], tf.int32, name="batch_size")],
            autograph=False,
        )

    def reset_state(self) -> Callable:
        """`reset_state()`: the stateful RNNs' states back to their initial states.

        Returns the states it set, under their `state_i` names.
        """

        def reset_state():
            results, index = {}, 0
            for record in self.records:
                if getattr(record.rnn, "stateful", False):
                    record.rnn.reset_state()
                    for variable in record.rnn.states:
                        results[state_name(index)] = tf.identity(variable.read_value())
                        index += 1
                else:
                    index += len(record.state_shapes)
            return results

        return tf.function(reset_state, input_signature=[], autograph=False)
