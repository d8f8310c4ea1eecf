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
from tfrnn._deploy.signatures import ModelSignatures, state_name
from tfrnn._deploy.state_snapshot import StateSnapshot

METADATA_FILE = "tfrnn_export.json"
SAMPLES_FILE = "tfrnn_samples.npz"
FORMAT_VERSION = 1
TOLERANCE = 1e-5

CheckFailed = checks.CheckFailed
SERVING_CHECK = "export check of serving_default (reloaded vs. in memory)"
STEP_CHECK = "export check of step (streamed one timestep at a time vs. serving_default)"
STEP_HINT = (
    "A model whose outputs depend on more than its RNNs' states and the current timestep (attention "
    "over time, a convolution over time, a mask made from lengths) cannot be streamed: export it "
    "with step=False"
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
def sample_inputs_for(signatures: ModelSignatures, batch: int, timesteps: int = 7, seed: int = 0) -> dict:
    """Fixed-seed sample inputs `{name: array}` for checks, in the model's shapes.

    Time-axis inputs get the model's fixed timesteps, or `timesteps`; floats are normal,
    integers 0 or 1 (token ids: 0 and 1 exist in every vocabulary, 0 being
    `Embedding(mask_zero=True)`'s padding), except a `[batch]` integer side input, taken as
    lengths: 1 to the number of timesteps. With a mask input, `mask` has a masked tail and a gap.
    """
    rng = np.random.default_rng(seed)
    time = signatures.inputs.timesteps or timesteps
    samples = {}
    for model_input in signatures.inputs.inputs:
        shape = [batch] + [time if d is None else d for d in model_input.spec.shape[1:].as_list()]
        dtype = model_input.spec.dtype
        if dtype.is_integer and not model_input.time_axis and len(shape) == 1:
            samples[model_input.name] = rng.integers(1, time + 1, shape).astype(dtype.as_numpy_dtype)
        elif dtype.is_integer or dtype.is_bool:
            samples[model_input.name] = rng.integers(0, 2, shape).astype(dtype.as_numpy_dtype)
        else:
            samples[model_input.name] = rng.standard_normal(shape).astype(dtype.as_numpy_dtype)
    if signatures.mask:
        sample_mask = np.ones([batch, time], bool)
        sample_mask[0, -2:] = False  # right padding
        if batch > 1 and time > 3:
            sample_mask[1, 2] = False  # a gap
        samples["mask"] = sample_mask
    return samples


def time_axes(metadata_or_signatures: Any) -> dict[str, bool]:
    """`{input name: has a time axis}` of a `ModelSignatures` or an export's metadata."""
    if isinstance(metadata_or_signatures, ModelSignatures):
        return {i.name: i.time_axis for i in metadata_or_signatures.inputs.inputs}
    described = (metadata_or_signatures or {}).get("inputs")
    if described is None:  # exports of tfrnn 0.1: one input
        return {"inputs": True}
    return {entry["name"]: entry["time_axis"] for entry in described}


def step_feed(samples: Mapping[str, np.ndarray], time_axis: Mapping[str, bool], t: int) -> dict:
    """Timestep `t` of the samples as `step` takes it: time-axis inputs (and `mask`) at `t`,
    side inputs whole."""
    return {
        name: value[:, t] if time_axis.get(name, name == "mask") else value
        for name, value in samples.items()
    }


def stream_through_step(step: Callable, initial_state: Callable, num_states: int, samples, time_axis) -> dict:
    """Feeds `samples` (`{name: array}`, `mask` too) to a `step` signature one timestep at a time.

    Returns `{name: [batch, time, ...]}` for each result but the states (stacked over time)
    and the states after the last step.

    Raises:
      CheckFailed: `step` did not return every state.
    """
    state_names = [state_name(i) for i in range(num_states)]
    streamed = [name for name in samples if time_axis.get(name, name == "mask")]
    batch, time = samples[streamed[0]].shape[:2]
    states = initial_state(batch_size=tf.constant(batch, tf.int32))
    states = {name: states[name] for name in state_names}
    collected: dict[str, list] = {}
    for t in range(time):
        result = step(**{k: tf.constant(v) for k, v in step_feed(samples, time_axis, t).items()}, **states)
        for name in state_names:
            if name not in result:
                raise checks.check_failed(STEP_CHECK, name, f"is missing from step's outputs {sorted(result)}")
        for name, value in result.items():
            if name not in state_names:
                collected.setdefault(name, []).append(value.numpy())
        states = {name: result[name] for name in state_names}
    return {**{k: np.stack(v, 1) for k, v in collected.items()}, **{k: v.numpy() for k, v in states.items()}}


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
    input_spec: Any = None,
    mask: bool = False,
    step: Optional[bool] = None,
    jit_compile: bool = False,
    sample_inputs: Any = None,
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
      input_spec: the model's inputs: a `tf.TensorSpec([batch or None, timesteps or None,
        *features])`, or a list or dict of them for a model called with that structure;
        default: read from a Keras model's inputs, a `__call__` with an `input_signature`, or
        a built `tfrnn.RNN` (see `tfrnn._deploy.model_inputs`: names, fixed timesteps, which
        inputs have a time axis). A stateful model's batch is its states'.
      mask: give the signatures a `mask` input (`[batch, time]`, `[batch]` for `step`),
        passed as `model(inputs, mask=mask)` (a model with one input).
      step: export `step` and `initial_state`: `None` when the model can stream (no RNN
        runs backwards and it takes any number of timesteps; otherwise the log and the
        metadata's `step_refused` say why not), `True` to insist (an error if it cannot),
        `False` to leave them out. Either way, streaming the samples through `step` must
        reproduce `serving_default`, or the export fails (a model that mixes timesteps
        otherwise, e.g. attention over time, needs `step=False`).
      jit_compile: XLA-compile the signatures (needs `--xla_cpu_compilation_enabled` on
        TF Serving); `False` serves on a stock server.
      sample_inputs, sample_mask: the inputs the export is checked on (and the warm-up
        request): an array for a model with one input, else `{input name: array}`;
        default: `sample_inputs_for` at batch 2 (or the stateful batch).
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
    path = _validated_arguments(export_dir, overwrite, tflite_batch_size)
    signatures = ModelSignatures(model, input_spec, mask=mask)
    wanted = _wants_step(signatures, step, log)
    samples = _samples(signatures, sample_inputs, sample_mask)
    tflite_batch = None if tflite_batch_size is None else signatures.stateful_batch() or int(tflite_batch_size)
    options = dict(jit_compile=jit_compile, tflite_batch=tflite_batch, fuse_lstm=fuse_lstm, warmup=warmup)
    with StateSnapshot.of_rnns(signatures.stateful_rnns) as snapshot:
        expected = signatures.reference(samples)
        snapshot.restore()
        return _export(path, signatures, snapshot, expected, samples, wanted, options, model_name, log)


def _export(path, signatures, snapshot, expected, samples, step: bool, options, model_name, log) -> ExportResult:
    """Traces, writes to a staging directory, checks, and moves the export into place."""
    functions = function_set.trace(
        signatures, jit_compile=options["jit_compile"], step=step, tflite_batch=options["tflite_batch"],
        fuse_lstm=options["fuse_lstm"],
    )
    snapshot.restore()  # the exported state variables start where the model's are
    metadata = _metadata(signatures, functions, options)
    with _staging_beside(path) as staging:
        _write(staging, functions, metadata, samples)
        if options["warmup"]:
            _write_warmup(staging, functions.serving, signatures, samples, model_name)
        log(f"checking the export of {type(signatures.model).__name__} ({', '.join(sorted(metadata['signatures']))})")
        errors = _check(staging, signatures, expected, samples, step, log)
        _move_into_place(staging, path)
    log(f"wrote {path}")
    return ExportResult(path, list(functions.serving.as_dict()), errors, metadata)


# -- the steps of export_saved_model, in order ---------------------------------------------------


def _validated_arguments(export_dir, overwrite: bool, tflite_batch_size) -> str:
    """The absolute export path, or an error naming the bad argument."""
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
    return path


def _wants_step(signatures: ModelSignatures, step: Optional[bool], log) -> bool:
    """Whether to export `step`: as asked, or (`None`) whenever the model can stream."""
    if step is not None:
        return bool(step)
    if not signatures.streamable:
        log(f"  no step signature: {signatures.why_not_streamable()}")
    return signatures.streamable


def given_samples(signatures: ModelSignatures, inputs: Any, mask: Any = None) -> dict[str, np.ndarray]:
    """`sample_inputs` (and `sample_mask`) checked against the signatures' inputs.

    `inputs`: an array (a model with one input) or `{input name: array}`. Returns
    `{name: array}` (with `mask`, all true unless given, when the signatures take one).
    """
    names = signatures.inputs.names
    if not isinstance(inputs, Mapping):
        if len(names) != 1:
            raise TypeError(
                f"sample_inputs must be a dict {{input name: array}} with the keys {names} (the model has "
                f"{len(names)} inputs), got {type(inputs).__name__}"
            )
        inputs = {names[0]: inputs}
    if sorted(inputs) != sorted(names):
        raise ValueError(f"sample_inputs must have the keys {sorted(names)} (the signature's inputs), got {sorted(inputs)}")
    samples = {}
    for model_input in signatures.inputs.inputs:
        value = np.asarray(inputs[model_input.name], model_input.spec.dtype.as_numpy_dtype)
        expected = model_input.sequence_spec(None).shape
        if not expected.is_compatible_with(value.shape):
            where = "" if len(names) == 1 else f"[{model_input.name!r}]"
            raise ValueError(f"sample_inputs{where} must have shape {expected.as_list()} (None: any), got {list(value.shape)}")
        samples[model_input.name] = value
    has_time_axis = time_axes(signatures)
    times = {v.shape[1] for k, v in samples.items() if has_time_axis[k]}
    if len(times) > 1:
        raise ValueError(f"sample_inputs: the inputs with a time axis must have the same number of timesteps, got {sorted(times)}")
    if signatures.mask:
        first = samples[names[0]]
        mask = np.ones(first.shape[:2], bool) if mask is None else np.asarray(mask, bool)
        if tuple(mask.shape) != tuple(first.shape[:2]):
            raise ValueError(f"sample_mask must have shape {list(first.shape[:2])}, got {list(mask.shape)}")
        samples["mask"] = mask
    return samples


def _samples(signatures: ModelSignatures, inputs, mask) -> dict[str, np.ndarray]:
    """The given samples, or `sample_inputs_for` at batch 2 (or the stateful batch)."""
    if inputs is None:
        generated = sample_inputs_for(signatures, signatures.stateful_batch() or 2)
        if mask is not None and "mask" in generated:
            generated["mask"] = mask
        inputs, mask = {k: v for k, v in generated.items() if k != "mask"}, generated.get("mask")
    return given_samples(signatures, inputs, mask)


def _feed(samples: Mapping[str, np.ndarray]) -> dict[str, tf.Tensor]:
    return {name: tf.constant(value) for name, value in samples.items()}


def _metadata(signatures: ModelSignatures, functions: function_set.FunctionSet, options: dict) -> dict:
    """`assets.extra/tfrnn_export.json`: what `tfrnn.tflite` and the tools read back."""
    first = (signatures.inputs.time_inputs or list(signatures.inputs.inputs))[0]
    return {
        "format": FORMAT_VERSION,
        "signatures": sorted(functions.serving.as_dict()),
        "inputs": [
            {"name": i.name, "shape": i.spec.shape.as_list(), "dtype": i.spec.dtype.name, "time_axis": i.time_axis}
            for i in signatures.inputs.inputs
        ],
        "input_shape": first.spec.shape.as_list(),
        "input_dtype": first.spec.dtype.name,
        "timesteps": signatures.inputs.timesteps,
        "mask": signatures.mask,
        "state_shapes": [s.as_list() for s in signatures.state_shapes],
        "state_dtypes": [d.name for d in signatures.state_dtypes],
        "stateful": signatures.stateful,
        "stateful_batch_size": signatures.stateful_batch(),
        "sequence_outputs": signatures.sequence_outputs,
        "step_refused": None if signatures.streamable else signatures.why_not_streamable(),
        "jit_compile": bool(options["jit_compile"]),
        "tflite_functions": functions.tflite_names(),
        "tflite_batch_size": options["tflite_batch"],
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
        # The fast loop's custom gradients are saved, so a reloaded export fine-tunes with the
        # same gradients (and loading it warns of no "unsaved custom gradients").
        options=tf.saved_model.SaveOptions(experimental_custom_gradients=True),
    )
    extra = os.path.join(staging, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, METADATA_FILE), "w") as f:
        json.dump(metadata, f, indent=2)
    np.savez(os.path.join(extra, SAMPLES_FILE), **samples)


def _write_warmup(staging: str, serving, signatures: ModelSignatures, samples: dict, model_name: str) -> None:
    """One warm-up request per signature that takes inputs (`serving_default`, `step`)."""
    requests = [("serving_default", dict(samples))]
    if serving.step is not None:
        batch = next(iter(samples.values())).shape[0]
        initial = serving.initial_state(tf.constant(batch, tf.int32))
        feed = {**step_feed(samples, time_axes(signatures), 0), **{k: v.numpy() for k, v in initial.items()}}
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
        loaded.signatures["step"], loaded.signatures["initial_state"], signatures.num_states, samples,
        time_axes(signatures),
    )
    for name in streamed:
        if name in whole and not name.startswith("state_"):
            streamed[name] = comparable_outputs(streamed[name], whole[name], mask, signatures.sequence_outputs.get(name))
    return checks.compare(
        streamed, whole, check=STEP_CHECK, tolerance=TOLERANCE, actual_name="step",
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
