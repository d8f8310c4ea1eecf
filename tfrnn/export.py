"""SavedModel export for TF Serving: full-sequence and streaming signatures, checked on export.

`export_saved_model(model, export_dir)` writes a SavedModel of any model built on
`tfrnn.RNN` (see `tfrnn._deploy.signatures` for the signatures it gets) that loads with
`tf.saved_model.load` in a process without tfrnn, runs under `saved_model_cli`, and serves on
a stock `tensorflow_model_server`:

* `jit_compile=False` (the default) traces every RNN without XLA: a stock server refuses
  functions marked `_XlaMustCompile` unless started with `--xla_cpu_compilation_enabled`
  (GPU: `--xla_gpu_compilation_enabled`); `jit_compile=True` exports XLA-compiled signatures
  for servers started that way (XLA compiles once per input shape there: bucket the lengths);
* the SavedModel also holds, as functions outside the signatures, the same model traced for
  the TFLite converter at a fixed batch (`tfrnn._deploy.function_set`; `tfrnn.tflite.convert`
  reads them);
* `assets.extra/tfrnn_export.json` describes the export and `assets.extra/tfrnn_samples.npz`
  holds the sample inputs it was checked on; with `warmup=True`,
  `assets.extra/tf_serving_warmup_requests` holds a warm-up request per signature.

Before anything is moved into place the export is loaded back and checked: `serving_default`
must reproduce the in-memory model's outputs on the sample inputs, and streaming them through
`step` one timestep at a time must reproduce `serving_default` (`check_outputs`: every
output present, same shapes, finite, within 1e-5). The SavedModel is written to a temporary
directory beside `export_dir` and renamed into place, so an existing export is never
half-overwritten (and never replaced without `overwrite=True`); a stateful model's state
variables are the same after the export as before, whether it succeeds or fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import os
import shutil
import tempfile
from typing import Any, Callable, Iterator, Mapping, Optional

import numpy as np
import tensorflow as tf

from tfrnn._deploy import checks
from tfrnn._deploy import function_set
from tfrnn._deploy import warmup as warmup_lib
from tfrnn._deploy.signatures import ModelSignatures, call_model, split_result, state_name
from tfrnn._deploy.state_snapshot import StateSnapshot
from tfrnn.bidirectional import Bidirectional
from tfrnn.rnn import RNN

METADATA_FILE = "tfrnn_export.json"
SAMPLES_FILE = "tfrnn_samples.npz"
FORMAT_VERSION = 1
TOLERANCE = 1e-5

CheckFailed = checks.CheckFailed
SERVING_CHECK = "export check of serving_default (reloaded vs. in memory)"
STEP_CHECK = "export check of step (streamed one timestep at a time vs. serving_default)"
STEP_HINT = (
    "A model whose outputs depend on more than its RNNs' states (e.g. attention over time) "
    "cannot be streamed: export it with step=False"
)


@dataclasses.dataclass
class ExportResult:
    """What `export_saved_model` wrote and measured."""

    path: str
    signatures: list[str]
    max_abs_error: dict[str, float]
    """Per check: `serving_default` (reloaded vs. in memory), `step` (streamed vs. whole)."""
    metadata: dict


def check_outputs(
    actual: Mapping[str, Any],
    expected: Mapping[str, Any],
    *,
    check: str,
    tolerance: float,
    actual_name: str = "actual",
    expected_name: str = "expected",
) -> float:
    """Compares named outputs as the export's and the TFLite conversion's checks do.

    Every output in `expected` must be in `actual` (extra ones are ignored), with the same
    shape; every compared value must be finite on both sides (a NaN is never "close").

    >>> tfrnn.export.check_outputs({"y": [1.0, 2.0]}, {"y": [1.0, 2.5]}, check="demo", tolerance=1.0)
    0.5

    Args:
      actual, expected: `{output name: array or tensor}`.
      check: what is checked, for the error (e.g. `"LiteRT vs. TensorFlow"`).
      tolerance: the largest absolute difference allowed.
      actual_name, expected_name: what produced each side, for the error.

    Returns:
      The largest absolute difference (finite).

    Raises:
      CheckFailed (a `ValueError`): an output is missing, has another shape, holds NaN or
        Inf, or differs by more than `tolerance`; its message names the check and the output.
    """
    return checks.compare(
        actual, expected, check=check, tolerance=tolerance, actual_name=actual_name,
        expected_name=expected_name, consequence=None,
    )
def infer_input_spec(model: Any) -> tf.TensorSpec:
    """`[batch, None, *features]` of a built `tfrnn.RNN` (or `Bidirectional`) or a Keras model
    with known inputs."""
    if isinstance(model, (RNN, Bidirectional)):
        if model.input_shape is None:
            raise ValueError(
                f"the {type(model).__name__} is not built, so its feature size is unknown; call it once, call "
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




def stream_through_step(step: Callable, initial_state: Callable, num_states: int, inputs, mask):
    """Feeds `inputs` `[batch, time, ...]` to a `step` signature one timestep at a time.

    Returns `{name: [batch, time, ...] or [batch, ...]}`: `outputs` stacked over time and the
    states after the last step.

    Raises:
      CheckFailed: `step` did not return `outputs` and every state.
    """
    names = ["outputs"] + [state_name(i) for i in range(num_states)]
    states = initial_state(batch_size=tf.constant(inputs.shape[0], tf.int32))
    states = {name: states[name] for name in names[1:]}
    outputs = []
    for t in range(inputs.shape[1]):
        feed = {"inputs": tf.constant(inputs[:, t]), **states}
        if mask is not None:
            feed["mask"] = tf.constant(mask[:, t])
        result = step(**feed)
        for name in names:
            if name not in result:
                raise checks.check_failed(STEP_CHECK, name, f"is missing from step's outputs {sorted(result)}")
        outputs.append(result["outputs"].numpy())
        states = {name: result[name] for name in names[1:]}
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
    >>> export_dir = os.path.join(tempfile.mkdtemp(), "lstm")
    >>> tfrnn.export.export_saved_model(rnn, export_dir).signatures
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
      ValueError: bad arguments, or a check failed (`CheckFailed`; nothing is written then).
      TypeError: an argument of the wrong type.
    """
    log = log or (lambda line: None)
    path, input_spec = _validated_arguments(model, export_dir, input_spec, overwrite, tflite_batch_size)
    signatures = ModelSignatures(model, input_spec, mask=mask)
    step = _wants_step(signatures, step, log)
    samples = _samples(signatures, sample_inputs, sample_mask)
    tflite_batch = None if tflite_batch_size is None else signatures.stateful_batch() or int(tflite_batch_size)
    with StateSnapshot.of_rnns(signatures.stateful_rnns) as snapshot:
        expected = _reference(signatures, samples, snapshot)
        functions = function_set.trace(
            signatures, jit_compile=jit_compile, step=step, tflite_batch=tflite_batch, fuse_lstm=fuse_lstm
        )
        snapshot.restore()  # the exported state variables start where the model's are
        metadata = _metadata(signatures, functions, jit_compile, tflite_batch)
        with _staging_beside(path) as staging:
            _write(staging, functions, metadata, samples)
            if warmup:
                _write_warmup(staging, functions.serving, samples, model_name)
            log(f"checking the export of {type(model).__name__} ({', '.join(sorted(metadata['signatures']))})")
            errors = _check(staging, signatures, expected, samples, step, log)
            _move_into_place(staging, path)
    log(f"wrote {path}")
    return ExportResult(path, list(functions.serving.as_dict()), errors, metadata)


# -- the steps of export_saved_model, in order ---------------------------------------------------


def _validated_arguments(model, export_dir, input_spec, overwrite: bool, tflite_batch_size):
    """`(absolute export path, input_spec)`, or an error naming the bad argument."""
    if not isinstance(export_dir, (str, os.PathLike)):
        raise TypeError(f"export_dir must be a path, got {type(export_dir).__name__}")
    path = os.path.abspath(os.fspath(export_dir))
    if os.path.exists(path) and not overwrite:
        raise ValueError(
            f"export_dir {path} already exists; pass overwrite=True (--overwrite) to replace it"
        )
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"export_dir {path} exists and is not a directory")
    if tflite_batch_size is not None and (
        isinstance(tflite_batch_size, bool) or not isinstance(tflite_batch_size, (int, np.integer)) or tflite_batch_size < 1
    ):
        raise ValueError(f"tflite_batch_size must be a positive int or None, got {tflite_batch_size!r}")
    if input_spec is None:
        input_spec = infer_input_spec(model)
    if not isinstance(input_spec, tf.TensorSpec):
        raise TypeError(f"input_spec must be a tf.TensorSpec, got {type(input_spec).__name__}")
    return path, input_spec


def _wants_step(signatures: ModelSignatures, step: Optional[bool], log) -> bool:
    """Whether to export `step`: as asked, or (`None`) whenever the model can stream."""
    if step is not None:
        return bool(step)
    if not signatures.streamable:
        log("  no step signature: the model has RNNs with go_backwards=True")
    return signatures.streamable


def _samples(signatures: ModelSignatures, inputs, mask) -> dict[str, np.ndarray]:
    """`{"inputs": [batch, time, ...], "mask": [batch, time]}` (mask only with a mask input)."""
    if inputs is None:
        inputs, generated_mask = sample_inputs_for(
            signatures.input_spec, signatures.stateful_batch() or 2, mask=signatures.mask
        )
        mask = generated_mask if mask is None else mask
    inputs = np.asarray(inputs, signatures.input_spec.dtype.as_numpy_dtype)
    if not signatures.input_spec.shape.is_compatible_with(inputs.shape):
        raise ValueError(
            f"sample_inputs must have shape {signatures.input_spec.shape.as_list()} (None: any), "
            f"got {list(inputs.shape)}"
        )
    if not signatures.mask:
        return {"inputs": inputs}
    if mask is None:
        mask = np.ones(inputs.shape[:2], bool)
    if tuple(np.shape(mask)) != tuple(inputs.shape[:2]):
        raise ValueError(f"sample_mask must have shape {list(inputs.shape[:2])}, got {list(np.shape(mask))}")
    return {"inputs": inputs, "mask": np.asarray(mask, bool)}


def _feed(samples: Mapping[str, np.ndarray]) -> dict[str, tf.Tensor]:
    return {name: tf.constant(value) for name, value in samples.items()}


def _reference(signatures: ModelSignatures, samples, snapshot: StateSnapshot) -> dict[str, np.ndarray]:
    """The in-memory model's outputs on the samples, as the user calls it (states restored)."""
    try:
        mask = samples.get("mask")
        result = call_model(signatures.model, tf.constant(samples["inputs"]), None if mask is None else tf.constant(mask))
    finally:
        snapshot.restore()
    named, _ = split_result(result)
    expected = {k: v.numpy() for k, v in named.items()}
    if isinstance(result, (list, tuple)) and len(result) == 1 + signatures.num_states:
        expected.update({state_name(i): np.asarray(s) for i, s in enumerate(result[1:])})
    return expected


def _metadata(signatures: ModelSignatures, functions: function_set.FunctionSet, jit_compile, tflite_batch) -> dict:
    """`assets.extra/tfrnn_export.json`: what `tfrnn.tflite` and the tools read back."""
    return {
        "format": FORMAT_VERSION,
        "signatures": sorted(functions.serving.as_dict()),
        "input_shape": signatures.input_spec.shape.as_list(),
        "input_dtype": signatures.input_spec.dtype.name,
        "mask": signatures.mask,
        "state_shapes": [s.as_list() for s in signatures.state_shapes],
        "state_dtypes": [d.name for d in signatures.state_dtypes],
        "stateful": signatures.stateful,
        "stateful_batch_size": signatures.stateful_batch(),
        "sequence_outputs": signatures.sequence_outputs,
        "jit_compile": bool(jit_compile),
        "tflite_functions": functions.tflite_names(),
        "tflite_batch_size": tflite_batch,
        "tfrnn_version": _version(),
    }


@contextlib.contextmanager
def _staging_beside(path: str) -> Iterator[str]:
    """A fresh hidden directory beside `path` (same file system: a rename moves it in).

    On an error it is removed, and so are the parent directories it needed to create.
    """
    parent = os.path.dirname(path)
    created = []
    ancestor = parent
    while not os.path.exists(ancestor):
        created.append(ancestor)
        ancestor = os.path.dirname(ancestor)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", dir=parent)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for directory in created:  # innermost first; only while still empty
            with contextlib.suppress(OSError):
                os.rmdir(directory)
        raise


def _write(staging: str, functions: function_set.FunctionSet, metadata: dict, samples: dict) -> None:
    """The SavedModel, its metadata and its sample inputs, into `staging`."""
    tf.saved_model.save(
        functions.saved_root(),
        staging,
        signatures=functions.serving.as_dict(),
        # Serving needs no gradients; custom gradients would add their graphs.
        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False),
    )
    extra = os.path.join(staging, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, METADATA_FILE), "w") as f:
        json.dump(metadata, f, indent=2)
    np.savez(os.path.join(extra, SAMPLES_FILE), **samples)


def _write_warmup(staging: str, serving: function_set.ServingFunctions, samples: dict, model_name: str) -> None:
    """One warm-up request per signature that takes inputs (`serving_default`, `step`)."""
    requests = [("serving_default", dict(samples))]
    if serving.step is not None:
        inputs = samples["inputs"]
        initial = serving.initial_state(tf.constant(inputs.shape[0], tf.int32))
        feed = {"inputs": inputs[:, 0], **{k: v.numpy() for k, v in initial.items()}}
        if "mask" in samples:
            feed["mask"] = samples["mask"][:, 0]
        requests.append(("step", feed))
    path = os.path.join(staging, "assets.extra", warmup_lib.WARMUP_FILE)
    warmup_lib.write_warmup_file(path, model_name, requests)


def _check(path: str, signatures: ModelSignatures, expected: dict, samples: dict, step: bool, log) -> dict[str, float]:
    """Reloads the export at `path` and checks its signatures; `{check: max abs error}`."""
    loaded = tf.saved_model.load(path)
    serving = loaded.signatures["serving_default"]
    errors = {
        "serving_default": checks.compare(
            serving(**_feed(samples)), expected, check=SERVING_CHECK, tolerance=TOLERANCE,
            actual_name="the reloaded SavedModel", expected_name="the model in memory",
        )
    }
    log(f"  serving_default, reloaded vs. in memory: max abs error {errors['serving_default']:.2e}")
    if step:
        errors["step"] = _check_step(loaded, signatures, samples)
        log(f"  step, streamed one timestep at a time vs. serving_default: max abs error {errors['step']:.2e}")
    return errors


def _check_step(loaded, signatures: ModelSignatures, samples: dict) -> float:
    """Streaming the samples through the reloaded `step` against its `serving_default`."""
    if signatures.stateful:
        loaded.signatures["reset_state"]()
    whole = {k: v.numpy() for k, v in loaded.signatures["serving_default"](**_feed(samples)).items()}
    mask = samples.get("mask")
    streamed = stream_through_step(
        loaded.signatures["step"], loaded.signatures["initial_state"], signatures.num_states, samples["inputs"], mask
    )
    expected = {k: v for k, v in whole.items() if k.startswith("state_") or k == "outputs"}
    if "outputs" in whole:
        streamed["outputs"] = comparable_outputs(
            streamed["outputs"], whole["outputs"], mask, signatures.sequence_outputs.get("outputs")
        )
    return checks.compare(
        streamed, expected, check=STEP_CHECK, tolerance=TOLERANCE, actual_name="step",
        expected_name="serving_default", hint=STEP_HINT,
    )


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
