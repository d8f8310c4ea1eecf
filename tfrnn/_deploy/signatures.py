"""The functions an export gives a model built on `tfrnn.RNN`: full sequence, step, states.

`ModelSignatures` wraps any callable model that runs `tfrnn.RNN`s — a `tfrnn.RNN`, a
`tf.Module` around several of them (its `__call__` may carry an `input_signature`), a Keras 3
model of `tfrnn.keras` layers or a tf-keras model of `tfrnn.tf_keras` layers — with the
inputs `tfrnn._deploy.model_inputs` reads (names, dtypes, fixed timesteps, which inputs
have a time axis), and traces:

* `serving_default(<inputs>[, mask [batch, time]])`: the whole sequence, as calling the
  model does (a stateful model reads and updates its states). One input is `inputs`;
  several keep their names. Results: `outputs` (or, for a dict result, its keys; for a list
  of several outputs, a Keras model's `output_names` or `output_<i>`) and, when the model
  returns states (a list `[output, *states]`), `state_0 ... state_{n-1}`: every RNN's final
  states, flat, in call order;
* `step(<inputs>, state_0, ...[, mask [batch]])`: one timestep with the states passed in
  and returned, for serving, where the server keeps no per-client state. Inputs with a
  time axis come one timestep at a time (`[batch, features...]`), side inputs whole. Every
  RNN of the model starts from its slice of the given states and returns its final states
  (see `StreamCapture`); stateful RNNs' variables are neither read nor written. A result
  with a time axis in the full sequence comes without it;
* `initial_state(batch_size)`: the states a new stream starts from (each cell's
  `get_initial_state`, zeros by default);
* `reset_state()` (stateful models): sets the state variables to their initial states.

A model cannot stream (no `step`) when its RNNs run backwards, or when it cannot be called
on another number of timesteps than it declares (a layer that mixes timesteps, such as a
`Flatten` over time); `why_not_streamable` says which. A model whose outputs depend on more
than its states and the current timestep (attention over time, a mask computed from the
position in the sequence) is caught by the export's step check.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrnn._core import trace_context
from tfrnn._core.arguments import accepts_argument
from tfrnn._deploy import composite_lstm
from tfrnn._deploy.model_inputs import ModelInputs, feeding, relaxed_callable
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


def call_kwargs(model: Any, call: Callable, mask: Optional[tf.Tensor]) -> dict:
    """The keywords a model is called with: `mask` (if any), `training=False` where taken."""
    kwargs = {}
    if mask is not None:
        kwargs["mask"] = mask
    if accepts_argument(getattr(model, "call", model), "training") or accepts_argument(call, "training"):
        kwargs["training"] = False
    return kwargs


def state_name(index: int) -> str:
    return f"state_{index}"


def output_names(model: Any, count: int) -> list[str]:
    """Names for a list of `count` outputs: a Keras model's `output_names`, else `output_<i>`."""
    names = list(getattr(model, "output_names", None) or [])
    if len(names) == count and len(set(names)) == count and all(re.fullmatch(r"[A-Za-z_][\w.\-/]*", n) for n in names):
        if not any(n == "outputs" or re.fullmatch(r"state_\d+", n) for n in names):
            return names
    return [f"output_{i}" for i in range(count)]


class ModelSignatures:
    """Traces a model's export signatures (see the module docstring).

    Args:
      model: the model; called as `model(inputs[, mask=mask][, training=False])`, its
        inputs in their own structure (see `tfrnn._deploy.model_inputs`).
      input_spec: `None` (read from the model), a `tf.TensorSpec`, or a list or dict of them.
      mask: whether the signatures take a mask (a model with one input only).
    """

    def __init__(self, model: Any, input_spec: Any = None, mask: bool = False):
        inputs = ModelInputs.of(model, input_spec)
        if mask and len(inputs) != 1:
            raise ValueError(
                f"mask=True calls model(inputs, mask=mask), but the model takes {len(inputs)} inputs "
                f"{inputs.names}; give it its mask as an input of its own, or mask inside the model "
                "(Masking, Embedding(mask_zero=True), tf.sequence_mask of a lengths input)"
            )
        if len(inputs) == 1 and inputs.inputs[0].spec.shape.rank < 2:
            raise ValueError(
                "input_spec must be [batch, timesteps, features...] (or [batch, timesteps] "
                f"for token ids), got shape {inputs.inputs[0].spec.shape}"
            )
        if isinstance(model, Bidirectional) and model.merge_mode is None:
            raise ValueError(
                "a tfrnn.Bidirectional with merge_mode=None returns two outputs, and a signature "
                "has one 'outputs'; export it with a merge_mode, or a module around it that "
                "returns a dict of the two"
            )
        self.model = model
        self.mask = bool(mask)
        self.inputs = inputs
        self._discover()

    # -- what the model holds ------------------------------------------------------------------

    def _discover(self) -> None:
        """Traces the model to find its RNNs, their states, its time-axis inputs and results."""
        # Traced as a stream that only records: stateful RNNs take any batch, move no state.
        capture = StreamCapture()
        seen = {}
        call = relaxed_callable(self.model, fixed_time=False)

        def trace(*flat):
            capture.records.clear()  # a model that creates its variables here is traced twice
            with trace_context.scope(jit_compile=False, stream=capture, observer=capture.record):
                result = self._call(flat, call)
            seen["placeholders"] = flat[: len(self.inputs)]
            named, seen["returns_states"] = self.split(result, capture.records)
            return named

        self._trace(trace, self._sequence_specs(None, declared=True))
        self.records = capture.records
        if not self.records:
            raise ValueError(
                f"the model ({type(self.model).__name__}) calls no tfrnn.RNN, so tfrnn "
                "cannot export its streaming step or states"
            )
        self.returns_states = seen["returns_states"]
        self.state_shapes = [shape for r in self.records for shape in r.state_shapes]
        self.state_dtypes = [r.dtype for r in self.records for _ in r.state_shapes]
        self.stateful_rnns = [r.rnn for r in self.records if getattr(r.rnn, "stateful", False)]
        self.backwards = [r.rnn for r in self.records if getattr(r.rnn, "go_backwards", False)]
        self.inputs = self.inputs.with_time_axes(self._time_axis_inputs(seen["placeholders"]))
        self._discover_streaming()

    def _time_axis_inputs(self, placeholders) -> list[int]:
        """The inputs of rank >= 2 that feed an RNN (all of rank >= 2 if none is traced to one)."""
        ranked = [n for n, i in enumerate(self.inputs.inputs) if i.spec.shape.rank >= 2]
        fed = feeding(placeholders, [t for r in self.records for t in r.inputs])
        return [n for n in ranked if n in fed] or ranked

    def _discover_streaming(self) -> None:
        """Traces the model on any number of timesteps: which results have a time axis, and
        whether it can stream at all (`stream_refusal` says why not)."""
        capture = StreamCapture()
        call = relaxed_callable(self.model, fixed_time=self.inputs.timesteps is not None)

        def trace(*flat):
            capture.records.clear()
            with trace_context.scope(jit_compile=False, stream=capture, observer=capture.record):
                named, _ = self.split(self._call(flat, call), capture.records)
            return named

        self.stream_refusal = None
        try:
            concrete = tf.function(trace, autograph=False).get_concrete_function(
                *self._sequence_specs(None, declared=True, any_time=True)
            )
            outputs = concrete.structured_outputs
        except (TypeError, ValueError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            self.stream_refusal = (
                f"the model cannot be called on {'any other number of' if self.inputs.timesteps else 'other numbers of'} "
                f"timesteps ({first})"
            )
            outputs = self._declared_outputs
        # A result with a time axis has it unknown when the inputs' time is unknown.
        self.sequence_outputs = {
            name: self.stream_refusal is None and t.shape.rank is not None and t.shape.rank >= 2 and t.shape[1] is None
            for name, t in outputs.items()
        }
        self.output_names = list(outputs)

    def _trace(self, trace: Callable, specs: list) -> None:
        try:
            self._declared_outputs = tf.function(trace, autograph=False).get_concrete_function(*specs).structured_outputs
        except (TypeError, ValueError) as error:
            described = ", ".join(f"{s.name} {s.shape} {s.dtype.name}" for s in specs)
            raise ValueError(f"the model cannot be called on its inputs ({described}): {error}") from error

    def _call(self, flat: Sequence[tf.Tensor], call: Optional[Callable] = None) -> Any:
        """The model (or `call`) on the flat signature arguments (inputs, then the mask)."""
        # A __call__ with an input_signature would reuse its first trace: trace its Python
        # function under each of the export's trace options instead.
        call = relaxed_callable(self.model, fixed_time=False) if call is None else call
        count = len(self.inputs)
        mask = flat[count] if self.mask else None
        return self.inputs.call(call, list(flat[:count]), **call_kwargs(self.model, call, mask))

    def split(self, result: Any, records: Sequence[trace_context.CallRecord]) -> tuple[dict, bool]:
        """`({name: tensor}, returns_states)` of a model's result.

        A tensor is `outputs`; a dict keeps its keys; a list or tuple is `[output, *states]`
        when its tail has the shapes of the RNNs' states, else several outputs
        (`output_names`).
        """
        if isinstance(result, dict):
            return {str(k): tf.convert_to_tensor(v) for k, v in result.items()}, False
        if not isinstance(result, (list, tuple)):
            return {"outputs": tf.convert_to_tensor(result)}, False
        tensors = [tf.convert_to_tensor(t) for t in result]
        shapes = [shape for r in records for shape in r.state_shapes]
        if len(tensors) == 1 or (
            len(tensors) == 1 + len(shapes)
            and all(t.shape[1:].is_compatible_with(s) for t, s in zip(tensors[1:], shapes))
        ):
            return {"outputs": tensors[0]}, len(tensors) > 1
        return dict(zip(output_names(self.model, len(tensors)), tensors)), False

    @property
    def stateful(self) -> bool:
        return bool(self.stateful_rnns)

    @property
    def streamable(self) -> bool:
        return not self.backwards and self.stream_refusal is None

    def why_not_streamable(self) -> str:
        if self.backwards:
            names = ", ".join(getattr(r, "name", type(r).__name__) for r in self.backwards)
            return f"the model's RNNs {names} run with go_backwards=True"
        return self.stream_refusal or ""

    @property
    def num_states(self) -> int:
        return len(self.state_shapes)

    def mask_spec(self, batch: Optional[int] = None, time: bool = True) -> tf.TensorSpec:
        shape = [batch, self.inputs.timesteps] if time else [batch]
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

    def _sequence_specs(self, batch: Optional[int], declared: bool = False, any_time: bool = False) -> list:
        """The inputs of a whole sequence (and `mask`), at `batch` (or the declared batch), the
        time axis as declared (or any, with `any_time`)."""
        specs = []
        for model_input in self.inputs.inputs:
            spec = model_input.sequence_spec(batch, any_time=any_time)
            if declared:
                spec = tf.TensorSpec([model_input.spec.shape[0]] + spec.shape[1:].as_list(), spec.dtype, name=spec.name)
            specs.append(spec)
        if self.mask:
            time = None if any_time else self.inputs.timesteps
            specs.append(tf.TensorSpec([specs[0].shape[0], time], tf.bool, name="mask"))
        return specs

    def _grouped(self, flat: Sequence[tf.Tensor]) -> list[list[tf.Tensor]]:
        groups, offset = [], 0
        for record in self.records:
            count = len(record.state_shapes)
            groups.append(list(flat[offset : offset + count]))
            offset += count
        return groups

    def reference(self, feed: dict) -> dict:
        """The model in memory on `feed` (`{signature input name: array}`), as the user calls
        it: `{result name: array}`, with the final states when the model returns them."""
        names = self.inputs.names + (["mask"] if self.mask else [])
        records: list = []
        with trace_context.scope(observer=records.append):
            result = self._call([tf.constant(feed[name]) for name in names])
        named, _ = self.split(result, records)
        expected = {k: v.numpy() for k, v in named.items()}
        if isinstance(result, (list, tuple)) and "outputs" in named and len(result) == 1 + self.num_states:
            expected.update({state_name(i): np.asarray(s) for i, s in enumerate(result[1:])})
        return expected

    # -- the signature functions -----------------------------------------------------------------

    def serving_default(self, options: TraceOptions, batch: Optional[int] = None) -> Callable:
        """The full-sequence function, a `tf.function` with its input signature."""
        specs = self._sequence_specs(batch)

        def serving_default(*flat):
            records: list = []
            with traced_with(options, observer=records.append):
                named, has_states = self.split(self._call(flat), records)
            if has_states:
                flat_states = [s for r in records for s in r.final_states]
                named.update({state_name(i): s for i, s in enumerate(flat_states)})
            return named

        return tf.function(serving_default, input_signature=specs, autograph=False, jit_compile=options.jit_compile or None)

    def probe(self, options: TraceOptions, batch: Optional[int] = None) -> Callable:
        """For TFLite checks: the largest |c| of every LSTM the converter would fuse.

        `options` must have `probe_cell_state=True`; the result is
        `{"max_abs_cell_state": [num_fused_lstms]}` (empty if none would fuse).
        """
        specs = self._sequence_specs(batch)

        def probe(*flat):
            with traced_with(options) as context:
                self._call(flat)
            found = context.substitute.max_abs_cell_state
            stacked = tf.stack(found) if found else tf.zeros([0], self.state_dtypes[0])
            return {"max_abs_cell_state": stacked}

        return tf.function(probe, input_signature=specs, autograph=False)

    def step(self, options: TraceOptions, batch: Optional[int] = None) -> Callable:
        """The one-timestep function with explicit states: time-axis inputs at one timestep,
        side inputs whole, then the states (and `mask [batch]`)."""
        if not self.streamable:
            raise ValueError(
                f"a step signature streams forwards one timestep at a time, but {self.why_not_streamable()}; "
                "export with step=False"
            )
        specs = [i.step_spec(batch) for i in self.inputs.inputs] + self.state_specs(batch)
        if self.mask:
            specs.append(self.mask_spec(batch, time=False))
        count, num_states = len(self.inputs), self.num_states
        call = relaxed_callable(self.model, fixed_time=self.inputs.timesteps is not None)

        def step(*args):
            flat = [a[:, None] if i.time_axis else a for a, i in zip(args[:count], self.inputs.inputs)]
            states = list(args[count : count + num_states])
            if self.mask:
                flat.append(args[count + num_states][:, None])
            capture = StreamCapture(self._grouped(states))
            with traced_with(options, stream=capture, observer=capture.record):
                named, _ = self.split(self._call(flat, call), capture.records)
            named = {
                name: tensor[:, 0] if self.sequence_outputs.get(name) else tensor
                for name, tensor in named.items()
            }
            named.update({state_name(i): s for i, s in enumerate(capture.final_states)})
            return named

        function = tf.function(step, input_signature=specs, autograph=False, jit_compile=options.jit_compile or None)
        try:
            function.get_concrete_function()  # traced now, so that a model that cannot stream says so
        except (TypeError, ValueError, tf.errors.OpError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(
                f"the model cannot be called on one timestep ({first}), so it cannot stream: a layer that "
                "mixes timesteps (e.g. a convolution over time) needs the whole sequence; export with step=False"
            ) from error
        return function

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
