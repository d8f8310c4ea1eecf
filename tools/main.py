"""tfrnn's main job, end to end: train an LSTM, export it, convert it, check it everywhere.

Run: `python tools/main.py` (or `tfrnn-demo`). Under 3 minutes on 2 cores:

1. trains a `tfrnn.keras.LSTM` classifier with `fit()` on a built-in synthetic task (is the
   running sum of a noisy signal positive at the end of the sequence? it needs memory), and
   checks the trained LSTM against Keras 3's own `keras.layers.LSTM` holding the same weights;
2. exports a SavedModel for TF Serving (`serving_default` and the streaming `step`);
3. converts it to TFLite (the LSTM as the fused `UNIDIRECTIONAL_SEQUENCE_LSTM` op);
4. runs the test set in TensorFlow, in the reloaded SavedModel in a fresh process that cannot
   import tfrnn, and in the LiteRT interpreter, and prints accuracy, file sizes, the largest
   differences from TensorFlow and the latency per sequence and per streaming step.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

VERBOSE = "--verbose" in sys.argv[1:]
if not VERBOSE:  # before TensorFlow loads; hides its C++ INFO/WARNING logs, not the lines printed before absl::InitializeLog
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import logging as absl_logging  # noqa: E402  (TensorFlow's Python warnings go through absl)
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402  (Keras 3: what tf.keras is in TensorFlow 2.21)

import tfrnn  # noqa: E402

TIMESTEPS, FEATURES, UNITS, CLASSES = 24, 4, 32, 2
START = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - START:6.1f}s] {message}", flush=True)


def make_task(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy signals `[count, time, features]`; the label: does feature 0 sum above zero?"""
    rng = np.random.default_rng(seed)
    inputs = rng.standard_normal([count, TIMESTEPS, FEATURES]).astype(np.float32)
    labels = (inputs[:, :, 0].sum(axis=1) > 0).astype(np.int32)
    return inputs, labels


def build_model() -> keras.Model:
    inputs = keras.Input((None, FEATURES), name="inputs")
    hidden = tfrnn.keras.LSTM(UNITS, seed=0, name="lstm")(inputs)
    logits = keras.layers.Dense(CLASSES, name="classifier")(hidden)
    return keras.Model(inputs, logits)


def checked_error(failures: list, check: str, actual, expected, tolerance: float, actual_name: str) -> float:
    """Max abs error of `actual` from `expected` by the export's own check (NaN on failure).

    `tfrnn.export.check_outputs` fails on a NaN or Inf on either side, a missing output and a
    shape difference as well as on the tolerance; a failure is recorded in `failures`.
    """
    try:
        return tfrnn.export.check_outputs(
            {"outputs": actual}, {"outputs": expected}, check=check, tolerance=tolerance,
            actual_name=actual_name, expected_name="TensorFlow",
        )
    except tfrnn.export.CheckFailed as error:
        failures.append(str(error))
        return float("nan")


def keras_parity(model: keras.Model, inputs: np.ndarray, failures: list) -> float:
    """Max abs difference of the trained LSTM from Keras 3's LSTM with the same weights."""
    twin = keras.layers.LSTM(UNITS)
    twin.build((None, TIMESTEPS, FEATURES))
    twin.set_weights(model.get_layer("lstm").get_weights())
    ours = keras.Model(model.input, model.get_layer("lstm").output)
    return checked_error(failures, "check of the trained LSTM vs. Keras 3", ours(inputs).numpy(), twin(inputs).numpy(), 1e-5, "tfrnn")


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def directory_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def run_without_tfrnn(export_dir: str, inputs: np.ndarray, work: str) -> dict:
    """The reloaded SavedModel's outputs, from a fresh process that cannot import tfrnn."""
    np.savez(os.path.join(work, "test_inputs.npz"), inputs=inputs)
    tool = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_saved_model.py")
    results = {}
    for mode, extra in (("serving_default", []), ("step", ["--stream"])):
        out = os.path.join(work, f"{mode}.npz")
        subprocess.run(
            [sys.executable, tool, export_dir, "--inputs", os.path.join(work, "test_inputs.npz"), "--out", out, *extra],
            check=True, capture_output=True, text=True,
        )
        with np.load(out) as data:
            results[mode] = data["outputs"]
    return results


def litert_outputs(runner, inputs: np.ndarray) -> np.ndarray:
    """Runs a batch-1 `serving_default` over the rows one by one."""
    return np.concatenate([runner(inputs=inputs[i : i + 1])["outputs"] for i in range(len(inputs))])


def train(args) -> keras.Model:
    train_x, train_y = make_task(args.train, seed=1)
    model = build_model()
    model.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(train_x, train_y, batch_size=64, epochs=args.epochs, verbose=0)
    progress(f"    final training loss {history.history['loss'][-1]:.3f}, accuracy {history.history['accuracy'][-1]:.3f}")
    return model


def latencies(model: keras.Model, export_dir: str, runtime, test_x: np.ndarray) -> dict:
    """Median seconds per sequence and per streaming step (batch 1, state carried) per runtime."""
    one = tf.constant(test_x[:1])
    serve = tf.function(lambda x: model(x, training=False))
    loaded = tf.saved_model.load(export_dir)
    saved_serving, saved_step = loaded.signatures["serving_default"], loaded.signatures["step"]
    lite_serving, lite_step = runtime.get_signature_runner("serving_default"), runtime.get_signature_runner("step")
    zeros = np.zeros([1, UNITS], np.float32)
    step_module = tfrnn.RNN(model.get_layer("lstm").cell, return_state=True, stateful=True)
    step_module.build([1, 1, FEATURES])
    x_step = tf.constant(test_x[:1, :1])
    x_step_np = test_x[:1, 0]
    return {
        "TensorFlow (tfrnn, XLA)": (
            median_seconds(lambda: serve(one).numpy(), 50),
            median_seconds(lambda: step_module(x_step)[0].numpy(), 200),
        ),
        "SavedModel (reloaded)": (
            median_seconds(lambda: saved_serving(inputs=one)["outputs"].numpy(), 50),
            median_seconds(lambda: saved_step(inputs=x_step_np, state_0=zeros, state_1=zeros)["outputs"].numpy(), 200),
        ),
        "LiteRT": (
            median_seconds(lambda: lite_serving(inputs=test_x[:1]), 50),
            median_seconds(lambda: lite_step(inputs=x_step_np, state_0=zeros, state_1=zeros), 200),
        ),
    }


def print_table(rows: list, latency: dict) -> None:
    print()
    print("| runtime | test accuracy | max abs err vs TF | streamed via step | size | ms / sequence | us / step |")
    print("|---|---|---|---|---|---|---|")
    for (name, acc, error, step_error, size), (seq_s, step_s) in zip(rows, latency.values()):
        step_text = "-" if step_error is None else f"{step_error:.1e}"
        print(
            f"| {name} | {acc:.3f} | {error:.1e} | {step_text} | {size} | "
            f"{seq_s * 1e3:.3f} | {step_s * 1e6:.0f} |"
        )
    print()


def compare(model, export_dir: str, tflite_path: str, converted, test: tuple, work: str, failures: list) -> tuple:
    """Rows per runtime (test accuracy, checked error from TensorFlow) and the LiteRT interpreter."""
    test_x, test_y = test
    tf_logits = model.predict(test_x, batch_size=64, verbose=0)
    reloaded = run_without_tfrnn(export_dir, test_x, work)
    runtime = tfrnn.tflite.interpreter(converted.model_content)
    lite_logits = litert_outputs(runtime.get_signature_runner("serving_default"), test_x)

    def accuracy(logits):
        return float(np.mean(np.argmax(logits, -1) == test_y))

    saved_error = checked_error(
        failures, "check of the reloaded SavedModel's serving_default", reloaded["serving_default"], tf_logits, 1e-5, "the reloaded SavedModel"
    )
    streamed_error = checked_error(
        failures, "check of the reloaded SavedModel's step, streamed", reloaded["step"][:, -1], tf_logits, 1e-5, "the reloaded SavedModel"
    )
    lite_error = checked_error(failures, "check of LiteRT's serving_default", lite_logits, tf_logits, 1e-4, "LiteRT")
    if accuracy(tf_logits) < 0.8:
        failures.append(f"the model did not learn the task (accuracy {accuracy(tf_logits):.3f})")
    lite_name = "LiteRT (fused LSTM op)" if converted.fused_lstms else "LiteRT"
    return [
        ("TensorFlow (tfrnn, XLA)", accuracy(tf_logits), 0.0, None, "-"),
        ("SavedModel (reloaded, no tfrnn)", accuracy(reloaded["serving_default"]), saved_error, streamed_error,
         f"{directory_size(export_dir) / 1024:.0f} KiB"),
        (lite_name, accuracy(lite_logits), lite_error, None, f"{os.path.getsize(tflite_path) / 1024:.0f} KiB"),
    ], runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=3000, help="training sequences")
    parser.add_argument("--test", type=int, default=256, help="test sequences")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", default=None, help="where to write the artifacts (default: a temp dir)")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's C++ and Python warnings")
    args = parser.parse_args(argv)
    if not args.verbose:
        # Reloading the SavedModel warns of "unsaved custom gradients" (the fast loop's
        # tf.custom_gradient); this job never asks a reloaded model for a gradient.
        absl_logging.set_verbosity(absl_logging.ERROR)
    work = args.out or tempfile.mkdtemp(prefix="tfrnn-demo-")
    os.makedirs(work, exist_ok=True)
    export_dir, tflite_path = os.path.join(work, "savedmodel"), os.path.join(work, "model.tflite")

    progress(f"1/4 training tfrnn.keras.LSTM({UNITS}) on {args.train} sequences of {TIMESTEPS} steps")
    model = train(args)
    test = make_task(args.test, seed=2)
    failures: list[str] = []
    parity = keras_parity(model, test[0][:32], failures)
    progress(f"    trained LSTM vs. Keras 3's keras.layers.LSTM with the same weights: max abs error {parity:.1e}")

    progress("2/4 exporting the SavedModel (serving_default + step), checked on export")
    export = tfrnn.export.export_saved_model(model, export_dir, overwrite=True, log=lambda line: progress("    " + line.strip()))

    progress("3/4 converting to TFLite, checked in LiteRT")
    converted = tfrnn.tflite.convert(export_dir, tflite_path, overwrite=True, log=lambda line: progress("    " + line.strip()))

    progress("4/4 the test set in TensorFlow, the reloaded SavedModel (fresh process, no tfrnn) and LiteRT")
    rows, runtime = compare(model, export_dir, tflite_path, converted, test, work, failures)
    print_table(rows, latencies(model, export_dir, runtime, test[0]))
    print(f"export checks: {export.max_abs_error}; TFLite: {converted.max_abs_error}; ops {sorted(converted.ops)}")
    print(f"artifacts in {work}")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    progress("done" if not failures else "done, with failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
