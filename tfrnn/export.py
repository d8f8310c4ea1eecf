"""SavedModel export for TF Serving: full-sequence and streaming signatures, checked on export.

`export_saved_model(model, export_dir)` writes a SavedModel of any model built on
`tfrnn.RNN` (see `tfrnn.signatures` for the signatures it gets) that loads with
`tf.saved_model.load` in a process without tfrnn, runs under `saved_model_cli`, and serves on
a stock `tensorflow_model_server`:

* `jit_compile=False` (the default) traces every RNN without XLA: a stock server refuses
  functions marked `_XlaMustCompile` unless started with `--xla_cpu_compilation_enabled`
  (GPU: `--xla_gpu_compilation_enabled`); `jit_compile=True` exports XLA-compiled signatures
  for servers started that way (XLA compiles once per input shape there: bucket the lengths);
* the SavedModel also holds, as functions outside the signatures, the same model traced for
  the TFLite converter at a fixed batch (`tfrnn.tflite.convert_saved_model` reads them);
* `assets.extra/tfrnn_export.json` describes the export and `assets.extra/tfrnn_samples.npz`
  holds the sample inputs it was checked on; with `warmup=True`,
  `assets.extra/tf_serving_warmup_requests` holds a warm-up request per signature.

Before anything is moved into place the export is loaded back and checked: `serving_default`
must reproduce the in-memory model's outputs on the sample inputs, and streaming them through
`step` one timestep at a time must reproduce `serving_default`. The SavedModel is written to
a temporary directory beside `export_dir` and renamed into place, so an existing export is
never half-overwritten (and never replaced without `overwrite=True`); a stateful model's
state variables are the same after the export as before.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import shutil
import tempfile
from typing import Any, Callable, Optional

import numpy as np
import tensorflow as tf

from tfrnn._deploy import composite_lstm
from tfrnn._deploy import warmup as warmup_lib
from tfrnn.rnn import RNN
from tfrnn._deploy.signatures import ModelSignatures, TraceOptions, call_model, split_result, state_name

METADATA_FILE = "tfrnn_export.json"
SAMPLES_FILE = "tfrnn_samples.npz"
FORMAT_VERSION = 1
TOLERANCE = 1e-5


@dataclasses.dataclass
class ExportResult:
    """What `export_saved_model` wrote and measured."""

    path: str
    signatures: list[str]
    max_abs_error: dict[str, float]
    """Per check: `serving_default` (reloaded vs. in memory), `step` (streamed vs. whole)."""
    metadata: dict


def infer_input_spec(model: Any) -> tf.TensorSpec:
    """`[batch, None, *features]` of a built `tfrnn.RNN` or a Keras model with known inputs."""
    if isinstance(model, RNN):
        if model.input_shape is None:
            raise ValueError(
                "the RNN is not built, so its feature size is unknown; call it once, call "
                "build([batch, None, features]), or pass input_spec=tf.TensorSpec([None, None, "
                "features])"
            )
        return tf.TensorSpec(model.input_shape, tf.float32)
    inputs = getattr(model, "inputs", None)
    if isinstance(inputs, (list, tuple)) and len(inputs) == 1 and hasattr(inputs[0], "shape"):
        shape = tf.TensorShape(inputs[0].shape)
        if shape.rank is not None and shape.rank >= 2 and shape[2:].is_fully_defined():
            dtype = tf.as_dtype(getattr(inputs[0], "dtype", tf.float32))
            return tf.TensorSpec(tf.TensorShape([shape[0], None]).concatenate(shape[2:]), dtype)
    raise ValueError(
        f"cannot tell the input shape of {type(model).__name__}; pass "
        "input_spec=tf.TensorSpec([None, None, *features])"
    )


def sample_inputs_for(
    spec: tf.TensorSpec, batch: int, timesteps: int = 7, mask: bool = False, seed: int = 0
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Fixed-seed sample inputs (and a mask with a gap and a masked tail) for checks."""
    rng = np.random.default_rng(seed)
    shape = [batch, timesteps] + spec.shape[2:].as_list()
    if spec.dtype.is_integer:
        # Token ids: 0 and 1 exist in every vocabulary (0 is Embedding(mask_zero=True)'s padding).
        inputs = rng.integers(0, 2, shape).astype(spec.dtype.as_numpy_dtype)
    else:
        inputs = rng.standard_normal(shape).astype(spec.dtype.as_numpy_dtype)
    if not mask:
        return inputs, None
    sample_mask = np.ones([batch, timesteps], bool)
    sample_mask[0, -2:] = False  # right padding
    if batch > 1 and timesteps > 3:
        sample_mask[1, 2] = False  # a gap
    return inputs, sample_mask


def _check_export_dir(export_dir: Any, overwrite: bool) -> str:
    if not isinstance(export_dir, (str, os.PathLike)):
        raise TypeError(f"export_dir must be a path, got {type(export_dir).__name__}")
    path = os.path.abspath(os.fspath(export_dir))
    if os.path.exists(path) and not overwrite:
        raise ValueError(
            f"export_dir {path} already exists; pass overwrite=True (--overwrite) to replace it"
        )
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"export_dir {path} exists and is not a directory")
    return path


def _state_snapshot(signatures: ModelSignatures) -> list[tuple[tf.Variable, np.ndarray]]:
    return [(v, v.numpy()) for rnn in signatures.stateful_rnns for v in rnn.states]


def _restore(snapshot) -> None:
    for variable, value in snapshot:
        variable.assign(value)


def _feed(inputs: np.ndarray, mask: Optional[np.ndarray]) -> dict:
    feed = {"inputs": tf.constant(inputs)}
    if mask is not None:
        feed["mask"] = tf.constant(mask)
    return feed


def _max_error(actual: dict, expected: dict) -> float:
    error = 0.0
    for name, value in expected.items():
        if name not in actual:
            raise ValueError(f"the reloaded model has no output {name!r}; it has {sorted(actual)}")
        a, b = np.asarray(actual[name]), np.asarray(value)
        if a.shape != b.shape:
            raise ValueError(f"output {name!r} has shape {a.shape} after reloading, {b.shape} before")
        error = max(error, float(np.max(np.abs(a - b))) if a.size else 0.0)
    return error


def stream_through_step(step: Callable, initial_state: Callable, num_states: int, inputs, mask):
    """Feeds `inputs` `[batch, time, ...]` to a `step` signature one timestep at a time.

    Returns `{name: [batch, time, ...] or [batch, ...]}`: `outputs` stacked over time and the
    states after the last step.
    """
    states = initial_state(batch_size=tf.constant(inputs.shape[0], tf.int32))
    states = {state_name(i): states[state_name(i)] for i in range(num_states)}
    outputs = []
    for t in range(inputs.shape[1]):
        feed = {"inputs": tf.constant(inputs[:, t]), **states}
        if mask is not None:
            feed["mask"] = tf.constant(mask[:, t])
        result = step(**feed)
        outputs.append(result["outputs"].numpy())
        states = {state_name(i): result[state_name(i)] for i in range(num_states)}
    return {"outputs": np.stack(outputs, 1), **{k: v.numpy() for k, v in states.items()}}


def comparable_outputs(streamed, whole, mask, sequence_output: bool) -> np.ndarray:
    """The streamed `[batch, time, ...]` outputs lined up with the whole sequence's.

    A masked step's states carry over in both, and its output in the whole sequence repeats
    the last unmasked output. The step signature repeats it too where a cell's output is its
    state (tfrnn's cells); a custom cell's step output at a masked step is its output for the
    carried zero output instead. So only unmasked steps are compared (masked ones take the
    whole sequence's values), and a last output is read at each row's last unmasked step.
    """
    if not sequence_output:
        if mask is None:
            return streamed[:, -1]
        last = np.where(mask.any(1), mask.shape[1] - 1 - np.argmax(mask[:, ::-1], 1), mask.shape[1] - 1)
        return streamed[np.arange(streamed.shape[0]), last]
    if mask is None:
        return streamed
    keep = mask.reshape(mask.shape + (1,) * (streamed.ndim - 2))
    return np.where(keep, streamed, whole)


def _reference(signatures: ModelSignatures, inputs, mask) -> dict:
    """The in-memory model's outputs on the samples, as the user calls it (states restored)."""
    snapshot = _state_snapshot(signatures)
    try:
        result = call_model(signatures.model, tf.constant(inputs), None if mask is None else tf.constant(mask))
    finally:
        _restore(snapshot)
    named, _ = split_result(result)
    expected = {k: v.numpy() for k, v in named.items()}
    if isinstance(result, (list, tuple)) and len(result) == 1 + signatures.num_states:
        expected.update({state_name(i): np.asarray(s) for i, s in enumerate(result[1:])})
    return expected


def _traced_functions(
    signatures: ModelSignatures, jit_compile: bool, step: bool, tflite_batch: Optional[int], fuse_lstm: bool
) -> tuple[dict, dict]:
    """`(serving signatures, TFLite functions)` as concrete functions."""
    batch = signatures.stateful_batch()
    serving = TraceOptions(jit_compile=jit_compile)
    functions = {"serving_default": signatures.serving_default(serving, batch)}
    if step:
        functions["step"] = signatures.step(serving)
        functions["initial_state"] = signatures.initial_state()
    if signatures.stateful:
        functions["reset_state"] = signatures.reset_state()
    concrete = {name: fn.get_concrete_function() for name, fn in functions.items()}
    lite = {}
    if tflite_batch is not None:
        options = TraceOptions(jit_compile=False, tflite=True, fuse_lstm=fuse_lstm)
        probe = TraceOptions(jit_compile=False, tflite=True, fuse_lstm=True, probe_cell_state=True)
        lite["serving_default"] = signatures.serving_default(options, tflite_batch)
        if fuse_lstm and any(composite_lstm.eligible(getattr(r.rnn, "cell", None)) for r in signatures.records):
            # For models whose LSTMs the fused op's cell clip would change (tfrnn.tflite).
            unfused = TraceOptions(jit_compile=False, tflite=True, fuse_lstm=False)
            lite["serving_default_unfused"] = signatures.serving_default(unfused, tflite_batch)
        lite["probe"] = signatures.probe(probe, tflite_batch)
        if step:
            lite["step"] = signatures.step(options, tflite_batch)
        if signatures.stateful:
            lite["reset_state"] = functions["reset_state"]
        lite = {name: fn.get_concrete_function() for name, fn in lite.items()}
    return concrete, lite


def _check(path, signatures, expected, inputs, mask, step: bool, log) -> dict[str, float]:
    loaded = tf.saved_model.load(path)
    errors = {}
    serving = loaded.signatures["serving_default"]
    errors["serving_default"] = _max_error(serving(**_feed(inputs, mask)), expected)
    log(f"  serving_default, reloaded vs. in memory: max abs error {errors['serving_default']:.2e}")
    if step:
        if signatures.stateful:
            loaded.signatures["reset_state"]()
        whole = {k: v.numpy() for k, v in serving(**_feed(inputs, mask)).items()}
        streamed = stream_through_step(
            loaded.signatures["step"], loaded.signatures["initial_state"], signatures.num_states, inputs, mask
        )
        expected_step = {k: v for k, v in whole.items() if k.startswith("state_") or k == "outputs"}
        streamed["outputs"] = comparable_outputs(
            streamed["outputs"], whole["outputs"], mask, signatures.sequence_outputs.get("outputs")
        )
        errors["step"] = _max_error(streamed, expected_step)
        log(f"  step, streamed one timestep at a time vs. serving_default: max abs error {errors['step']:.2e}")
    why = {
        "serving_default": "the reloaded model does not compute what the model in memory does",
        "step": "a model whose outputs depend on more than its RNNs' states (e.g. attention "
        "over time) cannot be streamed: export it with step=False",
    }
    for name, error in errors.items():
        if not error <= TOLERANCE:
            raise ValueError(
                f"export check failed: {name} differs by {error:.3g} (> {TOLERANCE}); nothing "
                f"was written. {why[name]}"
            )
    return errors


def export_saved_model(
    model: Any,
    export_dir: Any,
    *,
    input_spec: Optional[tf.TensorSpec] = None,
    mask: bool = False,
    step: Optional[bool] = None,
    jit_compile: bool = False,
    sample_inputs: Optional[np.ndarray] = None,
    sample_mask: Optional[np.ndarray] = None,
    warmup: bool = False,
    overwrite: bool = False,
    tflite_batch_size: Optional[int] = 1,
    fuse_lstm: bool = True,
    model_name: str = "model",
    log: Optional[Callable[[str], None]] = None,
) -> ExportResult:
    """Exports `model` as a checked SavedModel; see the module docstring.

    >>> rnn = tfrnn.RNN(tfrnn.LSTMCell(8), return_sequences=True)
    >>> rnn.build([None, None, 4])
    >>> import os, tempfile
    >>> tfrnn.export.export_saved_model(rnn, os.path.join(tempfile.mkdtemp(), "lstm")).signatures
    ['serving_default', 'step', 'initial_state']

    Args:
      model: a `tfrnn.RNN`, or any callable module or Keras model that calls `tfrnn.RNN`s
        (built, i.e. called once, so its variables exist).
      export_dir: where the SavedModel goes (must not exist unless `overwrite`).
      input_spec: `tf.TensorSpec([batch or None, None, *features])`; inferred from a built
        `tfrnn.RNN` or a Keras model's inputs. A stateful model's batch is its states'.
      mask: give the signatures a `mask` input (`[batch, time]`, `[batch]` for `step`),
        passed as `model(inputs, mask=mask)`.
      step: export `step` and `initial_state`: `None` when the model can stream (no RNN
        runs backwards), `True` to insist, `False` to leave them out.
      jit_compile: XLA-compile the signatures (needs `--xla_cpu_compilation_enabled` on
        TF Serving); `False` serves on a stock server.
      sample_inputs, sample_mask: the inputs the export is checked on (and the warm-up
        request); default: fixed-seed normal inputs `[2 or the stateful batch, 7, ...]`.
      warmup: write `assets.extra/tf_serving_warmup_requests`.
      overwrite: replace an existing `export_dir` (atomically).
      tflite_batch_size: the fixed batch of the functions kept for TFLite conversion
        (a stateful model uses its own); `None` leaves them out.
      fuse_lstm: let plain LSTM cells become TFLite's fused LSTM op in those functions.
      model_name: the model name in warm-up requests.
      log: called with progress lines (e.g. `print`).

    Returns:
      An `ExportResult`.

    Raises:
      ValueError: bad arguments, or a check failed (nothing is written then).
    """
    log = log or (lambda line: None)
    path = _check_export_dir(export_dir, overwrite)
    if input_spec is None:
        input_spec = infer_input_spec(model)
    if not isinstance(input_spec, tf.TensorSpec):
        raise TypeError(f"input_spec must be a tf.TensorSpec, got {type(input_spec).__name__}")
    signatures = ModelSignatures(model, input_spec, mask=mask)
    if step is None:
        step = signatures.streamable
        if not step:
            log("  no step signature: the model has RNNs with go_backwards=True")
    stateful_batch = signatures.stateful_batch()
    if sample_inputs is None:
        sample_inputs, generated_mask = sample_inputs_for(
            signatures.input_spec, stateful_batch or 2, mask=mask
        )
        sample_mask = generated_mask if sample_mask is None else sample_mask
    sample_inputs = np.asarray(sample_inputs, signatures.input_spec.dtype.as_numpy_dtype)
    if not signatures.input_spec.shape.is_compatible_with(sample_inputs.shape):
        raise ValueError(
            f"sample_inputs must have shape {signatures.input_spec.shape.as_list()} (None: any), "
            f"got {list(sample_inputs.shape)}"
        )
    if mask and sample_mask is None:
        sample_mask = np.ones(sample_inputs.shape[:2], bool)
    if mask and tuple(np.shape(sample_mask)) != tuple(sample_inputs.shape[:2]):
        raise ValueError(
            f"sample_mask must have shape {list(sample_inputs.shape[:2])}, got {list(np.shape(sample_mask))}"
        )
    sample_mask = np.asarray(sample_mask, bool) if mask else None
    if tflite_batch_size is not None:
        tflite_batch_size = stateful_batch or int(tflite_batch_size)

    snapshot = _state_snapshot(signatures)
    expected = _reference(signatures, sample_inputs, sample_mask)
    concrete, lite = _traced_functions(signatures, jit_compile, step, tflite_batch_size, fuse_lstm)
    _restore(snapshot)

    root = tf.Module()
    for name, function in lite.items():
        setattr(root, f"tflite_{name}", function)
    variables = {v.ref(): v for fn in list(concrete.values()) + list(lite.values()) for v in fn.variables}
    root.tracked_variables = [ref.deref() for ref in variables]
    metadata = {
        "format": FORMAT_VERSION,
        "signatures": sorted(concrete),
        "input_shape": signatures.input_spec.shape.as_list(),
        "input_dtype": signatures.input_spec.dtype.name,
        "mask": bool(mask),
        "state_shapes": [s.as_list() for s in signatures.state_shapes],
        "state_dtypes": [d.name for d in signatures.state_dtypes],
        "stateful": signatures.stateful,
        "stateful_batch_size": stateful_batch,
        "sequence_outputs": signatures.sequence_outputs,
        "jit_compile": bool(jit_compile),
        "tflite_functions": sorted(lite),
        "tflite_batch_size": tflite_batch_size,
        "tfrnn_version": _version(),
    }

    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", dir=parent)
    try:
        tf.saved_model.save(
            root,
            staging,
            signatures=concrete,
            # Serving needs no gradients; custom gradients would add their graphs.
            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False),
        )
        extra = os.path.join(staging, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        with open(os.path.join(extra, METADATA_FILE), "w") as f:
            json.dump(metadata, f, indent=2)
        samples = {"inputs": sample_inputs}
        if sample_mask is not None:
            samples["mask"] = sample_mask
        np.savez(os.path.join(extra, SAMPLES_FILE), **samples)
        if warmup:
            warmup_lib.write_warmup_file(
                os.path.join(extra, warmup_lib.WARMUP_FILE),
                model_name,
                _warmup_requests(signatures, sample_inputs, sample_mask, step),
            )
        log(f"checking the export of {type(model).__name__} ({', '.join(sorted(concrete))})")
        errors = _check(staging, signatures, expected, sample_inputs, sample_mask, step, log)
        _move_into_place(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _restore(snapshot)
        raise
    _restore(snapshot)
    log(f"wrote {path}")
    return ExportResult(path, list(concrete), errors, metadata)


def _warmup_requests(signatures, inputs, mask, step: bool) -> list:
    requests = [("serving_default", {k: v.numpy() for k, v in _feed(inputs, mask).items()})]
    if step:
        feed = {"inputs": inputs[:, 0]}
        initial = signatures.initial_state()(tf.constant(inputs.shape[0], tf.int32))
        feed.update({k: v.numpy() for k, v in initial.items()})
        if mask is not None:
            feed["mask"] = mask[:, 0]
        requests.append(("step", feed))
    return requests


def _move_into_place(staging: str, path: str) -> None:
    """Renames `staging` to `path`; an existing `path` is kept until the new one is there."""
    if not os.path.exists(path):
        os.rename(staging, path)
        return
    retired = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old.", dir=os.path.dirname(path))
    os.rmdir(retired)
    os.rename(path, retired)
    try:
        os.rename(staging, path)
    except BaseException:
        os.rename(retired, path)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def read_metadata(export_dir: str) -> Optional[dict]:
    """The `tfrnn_export.json` of a tfrnn export, or `None` for other SavedModels."""
    path = os.path.join(export_dir, "assets.extra", METADATA_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def read_samples(export_dir: str) -> Optional[dict]:
    """The sample inputs a tfrnn export was checked on (`inputs`, maybe `mask`)."""
    path = os.path.join(export_dir, "assets.extra", SAMPLES_FILE)
    if not os.path.exists(path):
        return None
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _version() -> str:
    try:
        return importlib.metadata.version("tfrnn")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"
