"""TFLite conversion of tfrnn models, checked in the LiteRT interpreter against TensorFlow.

`convert(source, output_path)` converts a model built on `tfrnn.RNN` — in memory, or a
SavedModel written by `tfrnn.export.export_saved_model` (which keeps TFLite-ready functions
beside its serving signatures) — into one `.tflite` file with the signatures
`serving_default` (the whole sequence) and `step` (one timestep, explicit states), plus
`reset_state` for a stateful model. Then it runs the file in LiteRT and TensorFlow on the
same sample inputs and reports the op list and the largest difference.

What it takes care of:

* plain LSTM cells become the fused `UNIDIRECTIONAL_SEQUENCE_LSTM` builtin (see
  `tfrnn._deploy.composite_lstm`), where the RNN's options allow it (no mask, no states read back,
  a fixed batch); the converter falls back silently, so the op count is checked;
* the fused op clips the cell state at +-10 (its `cell_clip`): with `fuse_lstm="auto"` the
  model is converted unfused when the sample inputs drive |c| past the clip, with
  `fuse_lstm=True` that is an error; either way the result says how large |c| got;
* the fused op keeps h and c in variable tensors; a stateless model is checked with two
  invocations in a row, which would differ if state leaked from one into the next (each
  compared with `tfrnn.export.check_outputs`' rules: every output present, same shapes,
  finite on both sides, within the tolerance);
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
from tfrnn._deploy import checks
from tfrnn._deploy import function_set
from tfrnn._deploy.function_set import TFLiteFunctions
from tfrnn._deploy.signatures import ModelSignatures
from tfrnn._deploy.state_snapshot import StateSnapshot

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
    """What a conversion converts and checks: a model's TFLite functions and sample inputs."""

    functions: TFLiteFunctions
    samples: dict
    """`{input name: array}` (and `mask`), at the functions' batch where it is fixed."""
    time_axis: dict
    """`{input name: has a time axis}` (streamed one timestep at a time by `step`)."""
    stateful: bool
    snapshot: StateSnapshot
    """A model in memory: its states, restored after the probe and at the end."""
    owner: Any = None
    """A loaded SavedModel: kept alive, since functions hold only weak references to variables."""


def _from_model(model, input_spec, mask, batch_size, step: Optional[bool], fuse_lstm) -> _Source:
    signatures = ModelSignatures(model, input_spec, mask=mask)
    batch = signatures.stateful_batch() or (None if batch_size is None else int(batch_size))
    if step and not signatures.streamable:
        raise ValueError(f"the model has no step signature: {signatures.why_not_streamable()}")
    functions = function_set.trace_tflite(
        signatures,
        batch=batch,
        step=signatures.streamable if step is None else step,
        fuse_lstm=fuse_lstm is not False,
    )
    # A dynamic batch is checked with 2 rows.
    samples = export_lib.sample_inputs_for(signatures, batch or 2)
    snapshot = StateSnapshot.of_rnns(signatures.stateful_rnns)
    return _Source(functions, samples, export_lib.time_axes(signatures), signatures.stateful, snapshot)


def _from_saved_model(path: str, want_step: Optional[bool]) -> _Source:
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
    functions = TFLiteFunctions.from_saved_model(loaded, metadata)
    if want_step and functions.step is None:
        raise ValueError(f"{path} has no step function (it was exported with step=False)")
    samples = export_lib.read_samples(path)
    if functions.batch is not None:
        samples = {k: _fit_batch(v, functions.batch) for k, v in samples.items()}
    time_axis = export_lib.time_axes(metadata)
    # The probe and the checks move a stateful model's states; the converted model must start
    # from the states the export saved (the variables `reset_state` assigns).
    states = functions.reset_state.variables if functions.reset_state is not None else []
    return _Source(functions, samples, time_axis, metadata["stateful"], StateSnapshot(states), owner=loaded)


def _fit_batch(array: np.ndarray, batch: int) -> np.ndarray:
    """The sample rows for a fixed batch: the first `batch` rows, repeated if too few."""
    reps = -(-batch // array.shape[0])
    return np.concatenate([array] * reps, 0)[:batch]


def _convert_functions(functions: dict, quantize) -> bytes:
    """Converts `{signature name: concrete function}` through a temporary SavedModel.

    (`from_saved_model` keeps the composite LSTM fusable; see the deployment notes.)
    """
    staging = tempfile.mkdtemp(prefix="tfrnn-tflite-")
    try:
        root = tf.Module()
        variables = {v.ref(): v for function in functions.values() for v in function.variables}
        root.owner_variables = list(variables.values())
        tf.saved_model.save(
            root,
            staging,
            signatures=functions,
            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False),
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(staging, signature_keys=list(functions))
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


def convert(
    source: Any,
    output_path: Optional[Union[str, os.PathLike]] = None,
    *,
    signatures: Optional[Sequence[str]] = None,
    quantize: Optional[str] = None,
    fuse_lstm: Union[bool, str] = "auto",
    input_spec: Any = None,
    mask: bool = False,
    batch_size: Optional[int] = 1,
    sample_inputs: Any = None,
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
        (an array for a model with one input, else `{input name: array}`; the batch fitted to
        the conversion's); default: those the SavedModel was exported with, or
        `tfrnn.export.sample_inputs_for` (the model's fixed timesteps, or 7).
      check: run the result in LiteRT against TensorFlow on sample inputs.
      overwrite: replace an existing `output_path`.
      log: called with progress lines.

    Returns:
      A `ConversionResult`.

    Raises:
      ValueError: bad arguments, ops TFLite lacks, a missing fused op, a cell-state clip that
        matters (with `fuse_lstm=True`), or a failed check (`tfrnn.export.CheckFailed`:
        LiteRT differs from TensorFlow, or an output is missing, misshapen, NaN or Inf on
        either side); nothing is written then, and a model's states are as they were.
    """
    log = log or (lambda line: None)
    output_path, requested = _validated_arguments(quantize, fuse_lstm, signatures, output_path, overwrite)
    want_step = None if requested is None else "step" in requested
    if isinstance(source, (str, os.PathLike)):
        loaded = _from_saved_model(os.fspath(source), want_step)
    else:
        loaded = _from_model(source, input_spec, mask, batch_size, want_step, fuse_lstm)
    with loaded.snapshot:
        if sample_inputs is not None:
            loaded.samples = _given_samples(sample_inputs, sample_mask, loaded)
        if requested is None:
            requested = ["serving_default"] + (["step"] if loaded.functions.step is not None else [])
        names = requested + (["reset_state"] if loaded.stateful else [])
        probe = _tf_call(loaded.functions.probe, loaded.samples)["max_abs_cell_state"].tolist()
        loaded.snapshot.restore()  # the converted variables start from the model's states as they were
        content, unfused, notes = _convert_choosing_fusion(loaded.functions, names, quantize, fuse_lstm, probe, log)
        ops = op_counts(content)
        log(f"  ops: {', '.join(f'{k} x{v}' for k, v in sorted(ops.items()))}")
        errors = _check_parity(loaded, content, names, unfused, quantize, log) if check else {}
    if output_path is not None:
        _write_atomically(output_path, content)
        log(f"wrote {output_path} ({len(content) / 1024:.1f} KiB)")
    return ConversionResult(output_path, content, names, ops, ops.get(FUSED_LSTM_OP, 0), probe, errors, notes)


# -- the steps of convert, in order ---------------------------------------------------------------


def _validated_arguments(quantize, fuse_lstm, signatures, output_path, overwrite: bool):
    """`(absolute output path or None, requested signatures or None)`, or an error."""
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
    return output_path, signatures


def _given_samples(inputs, mask, source: _Source) -> dict:
    """`sample_inputs` (and `sample_mask`, all-true by default) fitted to the functions' batch."""
    names = sorted(source.time_axis)
    if not isinstance(inputs, dict):
        if len(names) != 1:
            raise TypeError(f"sample_inputs must be a dict {{input name: array}} with the keys {names}, got {type(inputs).__name__}")
        inputs = {names[0]: inputs}
    if sorted(inputs) != names:
        raise ValueError(f"sample_inputs must have the keys {names} (the signature's inputs), got {sorted(inputs)}")
    samples = {k: np.asarray(v, source.samples[k].dtype) for k, v in inputs.items()}
    if mask is not None:
        samples["mask"] = np.asarray(mask, bool)
    elif "mask" in source.samples:
        timed = [samples[k] for k in names if source.time_axis[k]]
        samples["mask"] = np.ones(timed[0].shape[:2], bool)
    if source.functions.batch is not None:
        samples = {k: _fit_batch(v, source.functions.batch) for k, v in samples.items()}
    return samples


def _tf_call(function, feed: dict) -> dict:
    return {k: v.numpy() for k, v in function(**{k: tf.constant(v) for k, v in feed.items()}).items()}


def _convert_choosing_fusion(
    functions: TFLiteFunctions, names: list[str], quantize, fuse_lstm, probe: list[float], log
) -> tuple[bytes, bool, list[str]]:
    """`(model content, converted unfused, notes)`: fused where the clip and the converter allow.

    `probe` is the largest |c| of each LSTM that would fuse, on the sample inputs.
    """
    notes = []
    unfused = fuse_lstm is False or not probe or "serving_default" not in names
    if not unfused and not functions.fusable:
        message = "the SavedModel's TFLite functions were exported with fuse_lstm=False"
        if fuse_lstm is True:
            raise ValueError(f"{message}; convert with fuse_lstm='auto' or False, or export with fuse_lstm=True")
        notes.append(message + ": converted without the fused op")
        log("  " + notes[-1])
        unfused = True
    content = _convert_functions(functions.for_conversion(names, unfused), quantize)
    if unfused:
        return content, True, notes
    clips = fused_cell_clips(content)
    if len(clips) != len(probe):
        raise ValueError(
            f"{len(probe)} LSTM(s) should have become {FUSED_LSTM_OP}, but the converted model "
            f"has {len(clips)}; the converter kept the unfused loop. Convert with fuse_lstm=False"
        )
    clipped = [c for c, clip in zip(probe, clips) if c > clip]
    if not clipped:
        return content, False, notes
    message = (
        f"the fused LSTM op clips the cell state at +-{clips[0]:g}, but on the sample "
        f"inputs |c| reaches {max(clipped):.3g}, so its outputs may differ from TensorFlow's"
    )
    if fuse_lstm is True:
        raise ValueError(message + "; convert with fuse_lstm=False or 'auto'")
    notes.append(message + ": converted without the fused op")
    log("  " + notes[-1])
    return _convert_functions(functions.for_conversion(names, True), quantize), True, notes


def _check_parity(source: _Source, content: bytes, names, unfused: bool, quantize, log) -> dict[str, float]:
    """LiteRT vs. TF, two invocations in a row (state must carry only where it should)."""
    runtime = interpreter(content)
    functions = source.functions
    if source.stateful:
        functions.reset_state()
        runtime.get_signature_runner("reset_state")()
    errors = {}
    if "serving_default" in names:
        errors["serving_default"] = _check_serving(runtime, functions.serving(unfused), source, quantize)
        log(f"  serving_default: LiteRT vs. TensorFlow max abs error {errors['serving_default']:.2e}")
    if "step" in names:
        errors["step"] = _check_step(runtime, source, quantize)
        log(f"  step: LiteRT vs. TensorFlow max abs error {errors['step']:.2e}")
    if source.stateful:
        functions.reset_state()
    return errors


def _compare(actual, expected, check: str, quantize) -> float:
    tolerance = TOLERANCES[quantize]
    return checks.compare(
        actual, expected, check=f"TFLite check of {check}", tolerance=tolerance, actual_name="LiteRT",
        expected_name="TensorFlow", hint=f"The tolerance is {tolerance:g} for quantize={quantize!r}",
    )


def _check_serving(runtime, serving_tf, source: _Source, quantize) -> float:
    """`serving_default` on the samples and then on them reversed in time."""
    reversed_in_time = {
        k: v[:, ::-1].copy() if source.time_axis.get(k) else v for k, v in source.samples.items()
    }
    runner = runtime.get_signature_runner("serving_default")
    error = 0.0
    for call, feed in enumerate([source.samples, reversed_in_time], 1):
        # The second call sees whatever state the first one left.
        check = f"serving_default (LiteRT vs. TensorFlow, invocation {call})"
        error = max(error, _compare(runner(**feed), _tf_call(serving_tf, feed), check, quantize))
    return error


def _check_step(runtime, source: _Source, quantize) -> float:
    """The samples streamed through `step`, each side carrying its own states."""
    functions, samples = source.functions, source.samples
    runner = runtime.get_signature_runner("step")
    timed = [v for k, v in samples.items() if source.time_axis.get(k)]
    tf_states = _tf_call(functions.initial_state, {"batch_size": np.int32(timed[0].shape[0])})
    lite_states = dict(tf_states)
    error = 0.0
    for t in range(timed[0].shape[1]):
        feed = export_lib.step_feed(samples, source.time_axis, t)
        expected = _tf_call(functions.step, {**feed, **tf_states})
        actual = runner(**feed, **lite_states)
        check = f"step (LiteRT vs. TensorFlow, timestep {t})"
        error = max(error, _compare(actual, expected, check, quantize))
        tf_states = {k: v for k, v in expected.items() if k.startswith("state_")}
        lite_states = {k: np.asarray(actual[k]) for k in tf_states}
    return error


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
