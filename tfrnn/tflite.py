"""TFLite conversion of tfrnn models, checked in the LiteRT interpreter against TensorFlow.

`convert(source, output_path)` converts a model built on `tfrnn.RNN` — in memory, or a
SavedModel written by `tfrnn.export.export_saved_model` (which keeps TFLite-ready functions
beside its serving signatures) — into one `.tflite` file with the signatures
`serving_default` (the whole sequence) and `step` (one timestep, explicit states), plus
`reset_state` for a stateful model. Then it runs the file in LiteRT and TensorFlow on the
same sample inputs and reports the op list and the largest difference.

What it takes care of:

* plain LSTM cells become the fused `UNIDIRECTIONAL_SEQUENCE_LSTM` builtin (see
  `tfrnn.composite_lstm`), where the RNN's options allow it (no mask, no states read back,
  a fixed batch); the converter falls back silently, so the op count is checked;
* the fused op clips the cell state at +-10 (its `cell_clip`): with `fuse_lstm="auto"` the
  model is converted unfused when the sample inputs drive |c| past the clip, with
  `fuse_lstm=True` that is an error; either way the result says how large |c| got;
* the fused op keeps h and c in variable tensors; a stateless model is checked with two
  invocations in a row, which would differ if state leaked from one into the next;
* every other cell (GRU, SimpleRNN, custom cells) becomes a `WHILE` loop of builtin ops
  that takes a dynamic batch and time (`step` needs no loop at all); no Flex ops are
  allowed, and a cell that needs ops TFLite lacks gets an error naming them;
* a stateful model keeps its states in resource variables across invocations (and
  signatures: `reset_state` resets them); two invocations in a row must match TF's;
* `quantize="float16"` or `"dynamic_int8"` (dynamic-range int8 weights).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from tfrnn import export as export_lib
from tfrnn._deploy.signatures import ModelSignatures, TraceOptions, state_name

FUSED_LSTM_OP = "UNIDIRECTIONAL_SEQUENCE_LSTM"
QUANTIZATIONS = (None, "float16", "dynamic_int8")
# What the interpreter may differ from TF by, per quantization.
TOLERANCES = {None: 1e-4, "float16": 2e-2, "dynamic_int8": 1e-1}


@dataclasses.dataclass
class ConversionResult:
    """What `convert` wrote and measured."""

    path: Optional[str]
    model_content: bytes
    signatures: list[str]
    ops: dict[str, int]
    """Builtin op name -> count, over all subgraphs (WHILE bodies included)."""
    fused_lstms: int
    """How many LSTMs became the fused op."""
    max_abs_cell_state: list[float]
    """Per fusable LSTM: the largest |c| on the sample inputs (the fused op clips at 10)."""
    max_abs_error: dict[str, float]
    """Per signature checked: LiteRT vs. TensorFlow on the sample inputs."""
    notes: list[str]


@dataclasses.dataclass
class _Source:
    """The TFLite-ready concrete functions of a model or of a tfrnn SavedModel."""

    functions: dict
    samples: dict
    stateful: bool
    batch: Optional[int]
    """The fixed batch of the functions, `None` for a dynamic one."""
    state_snapshot: list = dataclasses.field(default_factory=list)
    """A model in memory: its state variables' values, restored after the checks."""
    owner: Any = None
    """A loaded SavedModel: kept alive, since functions hold only weak references to variables."""

    def restore(self) -> None:
        for variable, value in self.state_snapshot:
            variable.assign(value)


def _from_model(model, input_spec, mask, batch_size, step: Optional[bool]) -> _Source:
    if input_spec is None:
        input_spec = export_lib.infer_input_spec(model)
    signatures = ModelSignatures(model, input_spec, mask=mask)
    if step is None:
        step = signatures.streamable
    batch = signatures.stateful_batch() or (None if batch_size is None else int(batch_size))
    fused = TraceOptions(jit_compile=False, tflite=True, fuse_lstm=True)
    unfused = TraceOptions(jit_compile=False, tflite=True, fuse_lstm=False)
    probe = TraceOptions(jit_compile=False, tflite=True, fuse_lstm=True, probe_cell_state=True)
    functions = {
        "serving_default": signatures.serving_default(fused, batch),
        "serving_default_unfused": signatures.serving_default(unfused, batch),
        "probe": signatures.probe(probe, batch),
    }
    if step:
        functions["step"] = signatures.step(unfused, batch)
        functions["initial_state"] = signatures.initial_state()
    if signatures.stateful:
        functions["reset_state"] = signatures.reset_state()
    functions = {name: fn.get_concrete_function() for name, fn in functions.items()}
    # A dynamic batch is checked with 2 rows.
    inputs, sample_mask = export_lib.sample_inputs_for(signatures.input_spec, batch or 2, mask=mask)
    samples = {"inputs": inputs, **({"mask": sample_mask} if mask else {})}
    snapshot = [(v, v.numpy()) for rnn in signatures.stateful_rnns for v in rnn.states]
    return _Source(functions, samples, signatures.stateful, batch, snapshot)


def _from_saved_model(path: str) -> _Source:
    if not tf.saved_model.contains_saved_model(path):
        raise ValueError(f"{path} is not a SavedModel directory (no saved_model.pb in it)")
    metadata = export_lib.read_metadata(path)
    if metadata is None or not metadata.get("tflite_functions"):
        raise ValueError(
            f"{path} was not exported by tfrnn.export with TFLite functions; export it with "
            "tfrnn.export.export_saved_model(..., tflite_batch_size=1), or convert the model "
            "in memory with tfrnn.tflite.convert(model, ...)"
        )
    loaded = tf.saved_model.load(path)
    functions = {name: getattr(loaded, f"tflite_{name}") for name in metadata["tflite_functions"]}
    if "initial_state" in loaded.signatures:
        functions["initial_state"] = loaded.signatures["initial_state"]
    batch = metadata["tflite_batch_size"]
    samples = export_lib.read_samples(path)
    if batch is not None:
        samples = {k: _fit_batch(v, batch) for k, v in samples.items()}
    return _Source(functions, samples, metadata["stateful"], batch, owner=loaded)


def _fit_batch(array: np.ndarray, batch: int) -> np.ndarray:
    """The sample rows for a fixed batch: the first `batch` rows, repeated if too few."""
    reps = -(-batch // array.shape[0])
    return np.concatenate([array] * reps, 0)[:batch]


def _convert_functions(functions: dict, names: Sequence[str], quantize) -> bytes:
    """Converts concrete functions through a temporary SavedModel (keeps fusion working)."""
    staging = tempfile.mkdtemp(prefix="tfrnn-tflite-")
    try:
        root = tf.Module()
        variables = {v.ref(): v for name in names for v in functions[name].variables}
        root.owner_variables = list(variables.values())
        tf.saved_model.save(
            root,
            staging,
            signatures={name: functions[name] for name in names},
            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False),
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(staging, signature_keys=list(names))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.experimental_enable_resource_variables = True
        if quantize is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if quantize == "float16":
                converter.target_spec.supported_types = [tf.float16]
        try:
            return converter.convert()
        except Exception as error:  # the converter raises ConverterError and others
            raise _conversion_error(error) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _conversion_error(error: Exception) -> ValueError:
    """A one-paragraph error naming the TensorFlow ops TFLite has no builtin for."""
    text = str(error)
    missing = []
    for match in re.finditer(r"(?:TF Select ops|Custom ops|Flex ops): ([^\n]+)", text):
        missing += [op.strip() for op in match.group(1).split(",") if op.strip()]
    if missing:
        ops = ", ".join(sorted(set(missing)))
        return ValueError(
            f"the model uses TensorFlow ops that TFLite has no builtin for: {ops}. Write the "
            "cell with other ops, or convert it yourself with "
            "tf.lite.OpsSet.SELECT_TF_OPS (a Flex delegate at run time)"
        )
    first = text.strip().splitlines()[-1] if text.strip() else type(error).__name__
    return ValueError(f"TFLite conversion failed: {first}")


def op_counts(model_content: bytes) -> dict[str, int]:
    """Builtin (and custom) op name -> count over all subgraphs of a `.tflite` model."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_content))
    counts: dict[str, int] = {}
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "UNKNOWN")
            if name == "CUSTOM":
                name = f"CUSTOM:{code.customCode.decode() if code.customCode else '?'}"
            counts[name] = counts.get(name, 0) + 1
    return counts


def fused_cell_clips(model_content: bytes) -> list[float]:
    """The `cell_clip` of every fused LSTM op in a `.tflite` model."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_content))
    clips = []
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM:
                clips.append(float(op.builtinOptions.cellClip))
    return clips


def interpreter(model_content: bytes):
    """A LiteRT interpreter for `model_content` (`ai_edge_litert`)."""
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=model_content)


def _tf_call(function, feed: dict) -> dict:
    return {k: v.numpy() for k, v in function(**{k: tf.constant(v) for k, v in feed.items()}).items()}


def _max_error(actual: dict, expected: dict) -> float:
    return max(float(np.max(np.abs(np.asarray(actual[k]) - v))) for k, v in expected.items())


def _check_parity(source: _Source, content: bytes, names: Sequence[str], unfused: bool) -> dict:
    """LiteRT vs. TF, two invocations in a row (state must carry only where it should)."""
    runtime = interpreter(content)
    errors = {}
    inputs, mask = source.samples["inputs"], source.samples.get("mask")
    serving_tf = _serving_variant(source.functions, unfused)["serving_default"]
    if source.stateful:
        source.functions["reset_state"]()
        runtime.get_signature_runner("reset_state")()
    if "serving_default" in names:
        feeds = [{"inputs": inputs}, {"inputs": inputs[:, ::-1].copy()}]
        if mask is not None:
            for feed in feeds:
                feed["mask"] = mask
        runner = runtime.get_signature_runner("serving_default")
        error = 0.0
        for feed in feeds:  # the second call sees whatever state the first one left
            expected = _tf_call(serving_tf, feed)
            error = max(error, _max_error(runner(**feed), expected))
        errors["serving_default"] = error
    if "step" in names:
        step_runner = runtime.get_signature_runner("step")
        batch = inputs.shape[0]
        tf_states = _tf_call(source.functions["initial_state"], {"batch_size": np.int32(batch)})
        lite_states = dict(tf_states)
        error = 0.0
        for t in range(inputs.shape[1]):
            step_feed = {"inputs": inputs[:, t]}
            if mask is not None:
                step_feed["mask"] = mask[:, t]
            expected = _tf_call(source.functions["step"], {**step_feed, **tf_states})
            actual = step_runner(**step_feed, **lite_states)
            error = max(error, _max_error(actual, expected))
            tf_states = {k: v for k, v in expected.items() if k.startswith("state_")}
            lite_states = {k: np.asarray(v) for k, v in actual.items() if k.startswith("state_")}
        errors["step"] = error
    if source.stateful:
        source.functions["reset_state"]()
    return errors


def convert(
    source: Any,
    output_path: Optional[Union[str, os.PathLike]] = None,
    *,
    signatures: Optional[Sequence[str]] = None,
    quantize: Optional[str] = None,
    fuse_lstm: Union[bool, str] = "auto",
    input_spec: Optional[tf.TensorSpec] = None,
    mask: bool = False,
    batch_size: Optional[int] = 1,
    sample_inputs: Optional[np.ndarray] = None,
    sample_mask: Optional[np.ndarray] = None,
    check: bool = True,
    overwrite: bool = False,
    log: Optional[Callable[[str], None]] = None,
) -> ConversionResult:
    """Converts a model or a tfrnn SavedModel to TFLite and checks it; see the module docstring.

    Args:
      source: a model built on `tfrnn.RNN` (see `tfrnn.export.export_saved_model`), or the
        path of a SavedModel exported by tfrnn.
      output_path: where to write the `.tflite` file (must not exist unless `overwrite`);
        `None` writes nothing and returns the bytes.
      signatures: which of `serving_default` and `step` to include (`reset_state` comes
        with a stateful model); `None`: both, or only `serving_default` for a model that
        cannot stream (or a SavedModel exported without `step`).
      quantize: `None`, `"float16"` or `"dynamic_int8"`.
      fuse_lstm: `"auto"`, `True` or `False` (see the module docstring).
      input_spec, mask, batch_size: for a model in memory, as in `export_saved_model`
        (`batch_size` fixes the batch, which the fused LSTM op needs; `None` leaves it
        dynamic; a stateful model uses its own).
      sample_inputs, sample_mask: the inputs of the checks and of the cell-clip probe
        (`[batch, time, ...]`, the batch fitted to the conversion's); default: those the
        SavedModel was exported with, or fixed-seed normal inputs of 7 steps.
      check: run the result in LiteRT against TensorFlow on sample inputs.
      overwrite: replace an existing `output_path`.
      log: called with progress lines.

    Returns:
      A `ConversionResult`.

    Raises:
      ValueError: bad arguments, ops TFLite lacks, a missing fused op, a cell-state clip that
        matters (with `fuse_lstm=True`), or LiteRT disagreeing with TensorFlow.
    """
    log = log or (lambda line: None)
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    if fuse_lstm not in (True, False, "auto"):
        raise ValueError(f"fuse_lstm must be True, False or 'auto', got {fuse_lstm!r}")
    if signatures is not None:
        signatures = list(signatures)
        unknown = [s for s in signatures if s not in ("serving_default", "step")]
        if unknown or not signatures:
            raise ValueError(
                f"signatures must be among ['serving_default', 'step'], got {signatures}"
            )
    if output_path is not None:
        output_path = os.path.abspath(os.fspath(output_path))
        if os.path.exists(output_path) and not overwrite:
            raise ValueError(f"{output_path} already exists; pass overwrite=True (--overwrite) to replace it")
    want_step = None if signatures is None else "step" in signatures
    if isinstance(source, (str, os.PathLike)):
        loaded = _from_saved_model(os.fspath(source))
        if want_step and "step" not in loaded.functions:
            raise ValueError(f"{os.fspath(source)} has no step function (it was exported with step=False)")
    else:
        loaded = _from_model(source, input_spec, mask, batch_size, want_step)
    if sample_inputs is not None:
        samples = {"inputs": np.asarray(sample_inputs)}
        if sample_mask is not None:
            samples["mask"] = np.asarray(sample_mask, bool)
        elif "mask" in loaded.samples:
            samples["mask"] = np.ones(samples["inputs"].shape[:2], bool)
        if loaded.batch is not None:
            samples = {k: _fit_batch(v, loaded.batch) for k, v in samples.items()}
        loaded.samples = samples
    if signatures is None:
        signatures = ["serving_default"] + (["step"] if "step" in loaded.functions else [])
    names = list(signatures) + (["reset_state"] if loaded.stateful else [])

    try:
        return _convert_checked(loaded, names, output_path, quantize, fuse_lstm, check, log)
    finally:
        loaded.restore()


def _convert_checked(loaded: _Source, names, output_path, quantize, fuse_lstm, check, log):
    probe = _tf_call(loaded.functions["probe"], loaded.samples)["max_abs_cell_state"].tolist()
    loaded.restore()  # the converted variables start from the model's states as they were
    notes = []
    unfused = fuse_lstm is False or not probe or "serving_default" not in names
    content = _convert_functions(_serving_variant(loaded.functions, unfused), names, quantize)
    clips = fused_cell_clips(content)
    if not unfused:
        if len(clips) != len(probe):
            raise ValueError(
                f"{len(probe)} LSTM(s) should have become {FUSED_LSTM_OP}, but the converted model "
                f"has {len(clips)}; the converter kept the unfused loop. Convert with fuse_lstm=False"
            )
        clipped = [c for c, clip in zip(probe, clips) if c > clip]
        if clipped:
            message = (
                f"the fused LSTM op clips the cell state at +-{clips[0]:g}, but on the sample "
                f"inputs |c| reaches {max(clipped):.3g}, so its outputs may differ from TensorFlow's"
            )
            if fuse_lstm is True:
                raise ValueError(message + "; convert with fuse_lstm=False or 'auto'")
            notes.append(message + ": converted without the fused op")
            log("  " + notes[-1])
            unfused = True
            content = _convert_functions(_serving_variant(loaded.functions, True), names, quantize)
    ops = op_counts(content)
    fused = ops.get(FUSED_LSTM_OP, 0)
    log(f"  ops: {', '.join(f'{k} x{v}' for k, v in sorted(ops.items()))}")
    errors = {}
    if check:
        errors = _check_parity(loaded, content, names, unfused)
        tolerance = TOLERANCES[quantize]
        for name, error in errors.items():
            log(f"  {name}: LiteRT vs. TensorFlow max abs error {error:.2e}")
            if not error <= tolerance:
                raise ValueError(
                    f"LiteRT's {name} differs from TensorFlow's by {error:.3g} (> {tolerance} for "
                    f"quantize={quantize!r}); nothing was written"
                )
    if output_path is not None:
        _write_atomically(output_path, content)
        log(f"wrote {output_path} ({len(content) / 1024:.1f} KiB)")
    return ConversionResult(output_path, content, names, ops, fused, probe, errors, notes)


def _serving_variant(functions: dict, unfused: bool) -> dict:
    result = dict(functions)
    if unfused and "serving_default_unfused" in functions:
        result["serving_default"] = functions["serving_default_unfused"]
    return result


def _write_atomically(path: str, content: bytes) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(content)
        os.replace(staging, path)
    except BaseException:
        os.unlink(staging)
        raise
