"""Side-by-side RNN benchmark: tfrnn against tf-keras, Keras 3 and PyTorch, same weights.

Every peer runs in this one process, interleaved (round-robin over the peers, repeated), with
identical weights, and its outputs are checked against tfrnn's before anything is timed.
Scenarios: full-sequence inference, a training step (forward + backward + SGD update), one
streaming step with carried state, peak memory of a long training step, and compile counts
with and without length buckets. Reports medians with the 10th-90th percentile spread, each
peer's speed-up over tf-keras, throughput as a fraction of this machine's measured
large-matmul peak, and first-call (trace + compile) time; writes Markdown and JSON.

    python tools/benchmark.py            # full run
    python tools/benchmark.py --quick    # under 2 minutes: fewer shapes and repeats, no unroll

PyTorch is optional (`pip install torch==2.13.0`); it is never a tfrnn dependency.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any, Callable, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

import tfrnn  # noqa: E402

try:
    import torch  # noqa: E402
except ImportError:  # optional peer
    torch = None

INFERENCE_SHAPES = [(1, 100, 64, 128), (32, 100, 64, 128), (128, 50, 256, 512)]
TRAIN_SHAPE = (32, 100, 64, 128)
STREAM_SHAPE = (1, 64, 256)  # batch, features, units
MEMORY_SHAPE = (32, 1000, 64, 128)
GATES = {"lstm": 4, "gru": 3}
TOLERANCE = 1e-4
PAUSE_BETWEEN_PEERS_S = 0.005


# -- timing ---------------------------------------------------------------------------------


def _interleaved(peers: dict[str, Callable[[], Any]], repeats: int, inner: int) -> dict:
    """Round-robin timing: each repeat calls every peer `inner` times; seconds per call.

    The order rotates by one peer per repeat: measured here, whichever peer runs first in a
    round (right after the slowest one) comes out 3-5% slower than it is. Each peer's window
    starts after a short busy pause: PyTorch's OpenMP threads keep spinning after its calls
    and took a core from the peer timed next (tfrnn LSTM 32x100x64x128: 6.0 ms right after
    PyTorch, 5.0 ms with a pause, 5.0 ms without PyTorch in the round). The pause spins
    rather than sleeps: after a sleep every peer's batch-1 calls measured slower (the cores
    clock down when idle).
    """
    samples = {name: [] for name in peers}
    names = list(peers)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            fn = peers[name]
            _spin(PAUSE_BETWEEN_PEERS_S)
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - start) / inner)
    return {name: np.array(values) for name, values in samples.items()}


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _first_call(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _summary(seconds: np.ndarray) -> dict:
    return {
        "median_ms": float(np.median(seconds) * 1e3),
        "p10_ms": float(np.percentile(seconds, 10) * 1e3),
        "p90_ms": float(np.percentile(seconds, 90) * 1e3),
    }


def matmul_peak_gflops(size: int = 2048, repeats: int = 10) -> float:
    """This machine's large-matmul throughput (best of XLA and TensorFlow's own kernel)."""
    a = tf.constant(np.random.default_rng(0).standard_normal([size, size]).astype(np.float32))
    best = 0.0
    for jit in (True, False):
        fn = tf.function(lambda a: tf.matmul(a, a), jit_compile=jit)
        fn(a).numpy()
        times = [_first_call(lambda: fn(a).numpy()) for _ in range(repeats)]
        best = max(best, 2.0 * size**3 / np.median(times) / 1e9)
    return best


def _forward_flops(kind: str, batch: int, timesteps: int, features: int, units: int) -> float:
    return 2.0 * batch * timesteps * (features + units) * GATES[kind] * units


# -- peers with identical weights ------------------------------------------------------------


def _tfrnn_cell(kind: str, units: int):
    return tfrnn.LSTMCell(units, seed=0) if kind == "lstm" else tfrnn.GRUCell(units, seed=0)


def _torch_weights(kind: str, kernel, recurrent_kernel, bias):
    """Keras layout -> PyTorch's: LSTM gates i,f,c,o match; GRU z,r,h -> r,z,n."""
    if kind == "lstm":
        return kernel.T, recurrent_kernel.T, bias, np.zeros_like(bias)

    def reorder(matrix):
        z, r, h = np.split(matrix, 3, axis=-1)
        return np.concatenate([r, z, h], axis=-1)

    return reorder(kernel).T, reorder(recurrent_kernel).T, reorder(bias[0]), reorder(bias[1])


def build_peers(kind: str, shape: tuple, stateful_batch: Optional[int] = None, unroll: bool = True) -> dict:
    """`{name: (forward(x), variables, model)}` for every peer, all holding the same weights.

    `unroll=False` leaves out tfrnn's unrolled path (its first call compiles for 5-7 s).
    """
    _, timesteps, features, units = shape
    cell = _tfrnn_cell(kind, units)
    peers = {}
    paths = [("tfrnn", {}), ("tfrnn unroll", {"unroll": True}), ("tfrnn no-XLA", {"jit_compile": False})]
    for name, options in paths if unroll else [p for p in paths if p[0] != "tfrnn unroll"]:
        peer_cell = _tfrnn_cell(kind, units)
        rnn = tfrnn.RNN(peer_cell, **options)
        rnn.build([None, timesteps, features])
        if name == "tfrnn":
            cell = peer_cell
        peers[name] = (rnn, list(peer_cell.weights))
    weights = cell.get_weights()
    for name, _ in list(peers.items()):
        peers[name][0].cell.set_weights(weights)

    keras2 = (tf_keras.layers.LSTM if kind == "lstm" else tf_keras.layers.GRU)(units)
    keras2.build((None, timesteps, features))
    keras2.set_weights(weights)
    peers["tf-keras"] = (keras2, keras2.trainable_variables)

    import keras  # Keras 3, on the TensorFlow backend

    keras3 = (keras.layers.LSTM if kind == "lstm" else keras.layers.GRU)(units)
    keras3.build((None, timesteps, features))
    keras3.set_weights(weights)
    peers["keras3 (jit)"] = (keras3, [v.value for v in keras3.trainable_variables])

    if torch is not None:
        module = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(features, units, batch_first=True)
        w_ih, w_hh, b_ih, b_hh = _torch_weights(kind, *weights)
        with torch.no_grad():
            module.weight_ih_l0.copy_(torch.tensor(w_ih))
            module.weight_hh_l0.copy_(torch.tensor(w_hh))
            module.bias_ih_l0.copy_(torch.tensor(b_ih))
            module.bias_hh_l0.copy_(torch.tensor(b_hh))
        peers["pytorch"] = (module, list(module.parameters()))
    return peers


def _tf_forward(name: str, model) -> Callable:
    jit = name == "keras3 (jit)"
    return tf.function(lambda x: model(x), jit_compile=jit)


def _torch_forward(module) -> Callable:
    def forward(x):
        with torch.no_grad():
            out, _ = module(x)
        return out[:, -1]

    return forward


def _check(outputs: dict, reference: str) -> dict:
    errors = {}
    for name, value in outputs.items():
        errors[name] = float(np.max(np.abs(np.asarray(value) - np.asarray(outputs[reference]))))
        if errors[name] > TOLERANCE:
            raise AssertionError(f"{name} disagrees with {reference}: max abs error {errors[name]:.2e}")
    return errors


# -- scenarios -------------------------------------------------------------------------------


def bench_inference(kind: str, shape: tuple, repeats: int, peak: float, unroll: bool = True) -> dict:
    batch, timesteps, features, units = shape
    x = np.random.default_rng(1).standard_normal([batch, timesteps, features]).astype(np.float32)
    x_tf = tf.constant(x)
    peers = build_peers(kind, shape, unroll=unroll)
    calls, outputs, first = {}, {}, {}
    for name, (model, _) in peers.items():
        if name == "pytorch":
            forward, argument = _torch_forward(model), torch.tensor(x)
            call = lambda f=forward, a=argument: f(a)  # noqa: E731
            to_numpy = lambda out: out.numpy()  # noqa: E731
        else:
            forward = _tf_forward(name, model)
            call = lambda f=forward: f(x_tf).numpy()  # noqa: E731
            to_numpy = np.asarray
        first[name] = _first_call(call)
        outputs[name] = to_numpy(call())
        calls[name] = call
    errors = _check(outputs, "tfrnn")
    inner = max(1, int(0.02 / max(1e-5, min(first.values()))))
    times = _interleaved(calls, repeats, min(inner, 20))
    flops = _forward_flops(kind, *shape)
    return _rows(times, first, errors, flops, peak)


def bench_training(kind: str, shape: tuple, repeats: int, peak: float, unroll: bool = True) -> dict:
    batch, timesteps, features, units = shape
    rng = np.random.default_rng(2)
    x = rng.standard_normal([batch, timesteps, features]).astype(np.float32)
    y = rng.standard_normal([batch, units]).astype(np.float32)
    x_tf, y_tf = tf.constant(x), tf.constant(y)
    peers = build_peers(kind, shape, unroll=unroll)
    calls, grads, first = {}, {}, {}
    for name, (model, variables) in peers.items():
        if name == "pytorch":
            optimizer = torch.optim.SGD(variables, lr=0.01)
            xt, yt = torch.tensor(x), torch.tensor(y)

            def torch_step(model=model, optimizer=optimizer, xt=xt, yt=yt, update=True):
                optimizer.zero_grad()
                out, _ = model(xt)
                loss = torch.mean((out[:, -1] - yt) ** 2)
                loss.backward()
                grad = model.weight_hh_l0.grad.detach().numpy().T.copy()
                if update:
                    optimizer.step()
                return grad

            grads[name] = _torch_recurrent_grad(kind, torch_step(update=False))
            calls[name] = torch_step
        else:

            def make(model=model, variables=variables, jit=(name == "keras3 (jit)")):
                @tf.function(jit_compile=jit)
                def gradients(x, y):
                    with tf.GradientTape() as tape:
                        loss = tf.reduce_mean((model(x) - y) ** 2)
                    return tape.gradient(loss, variables)

                @tf.function(jit_compile=jit)
                def step(x, y):
                    for variable, grad in zip(variables, gradients(x, y)):
                        variable.assign_sub(0.01 * grad)

                return gradients, step

            gradients, step = make()
            grads[name] = gradients(x_tf, y_tf)[1].numpy()  # d recurrent_kernel
            calls[name] = lambda s=step: s(x_tf, y_tf)
        first[name] = _first_call(calls[name])
    errors = _check(grads, "tfrnn")
    times = _interleaved(calls, repeats, 1)
    flops = 3.0 * _forward_flops(kind, *shape)
    return _rows(times, first, errors, flops, peak)


def _torch_recurrent_grad(kind: str, grad_t: np.ndarray) -> np.ndarray:
    """PyTorch's d weight_hh, back in Keras' layout (for the equality check)."""
    if kind == "lstm":
        return grad_t
    r, z, h = np.split(grad_t, 3, axis=-1)
    return np.concatenate([z, r, h], axis=-1)


def _rows(times, first, errors, flops, peak) -> dict:
    reference = np.median(times["tf-keras"])
    rows = {}
    for name, seconds in times.items():
        median = float(np.median(seconds))
        rows[name] = {
            **_summary(seconds),
            "speedup_vs_tf_keras": float(reference / median),
            "gflops": flops / median / 1e9,
            "fraction_of_peak": flops / median / 1e9 / peak,
            "first_call_s": first[name],
            "max_abs_error_vs_tfrnn": errors[name],
        }
    return rows


def _exported_step_peers(cell, features: int, state_count: int, workdir: str) -> dict:
    """The `step` signature of the reloaded SavedModel and of the converted LiteRT model.

    Both start from zero states and carry them from call to call, as a serving client does.
    """
    rnn = tfrnn.RNN(cell)
    rnn.build([None, None, features])
    export_dir = os.path.join(workdir, "savedmodel")
    tfrnn.export.export_saved_model(rnn, export_dir, overwrite=True)
    converted = tfrnn.tflite.convert(export_dir, None, signatures=["step"])
    step = tf.saved_model.load(export_dir).signatures["step"]
    runner = tfrnn.tflite.interpreter(converted.model_content).get_signature_runner("step")
    zeros = {f"state_{i}": np.zeros([1, cell.units], np.float32) for i in range(state_count)}
    saved_states = {k: tf.constant(v) for k, v in zeros.items()}
    lite_states = dict(zeros)

    def saved_step(x):
        result = step(inputs=x, **saved_states)
        saved_states.update({k: v for k, v in result.items() if k.startswith("state_")})
        return result["outputs"].numpy()

    def lite_step(x):
        result = runner(inputs=x, **lite_states)
        lite_states.update({k: v for k, v in result.items() if k.startswith("state_")})
        return result["outputs"]

    def reset():
        saved_states.update({k: tf.constant(v) for k, v in zeros.items()})
        lite_states.update(zeros)

    return {"saved": saved_step, "lite": lite_step, "reset": reset}


def bench_streaming(kind: str, repeats: int) -> dict:
    """One timestep, batch 1, state carried between calls: the serving case."""
    import tempfile

    batch, features, units = STREAM_SHAPE
    x = np.random.default_rng(3).standard_normal([batch, 1, features]).astype(np.float32)
    x_tf = tf.constant(x)
    cell = _tfrnn_cell(kind, units)
    rnn = tfrnn.RNN(cell, stateful=True)
    rnn(x_tf)
    rnn.reset_state()
    keras_layer = (tf_keras.layers.LSTM if kind == "lstm" else tf_keras.layers.GRU)(
        units, stateful=True
    )
    keras_layer(tf.zeros([batch, 1, features]))
    keras_layer.set_weights(cell.get_weights())
    keras_layer.reset_states()
    keras_step = tf.function(lambda x: keras_layer(x))
    workdir = tempfile.mkdtemp(prefix="tfrnn-benchmark-")
    exported = _exported_step_peers(cell, features, 2 if kind == "lstm" else 1, workdir)
    x_step = x[:, 0]
    calls = {
        "tfrnn (module from Python)": lambda: rnn(x_tf).numpy(),
        "tfrnn SavedModel step (reloaded)": lambda: exported["saved"](x_step),
        "tfrnn LiteRT step": lambda: exported["lite"](x_step),
        "tf-keras stateful (tf.function)": lambda: keras_step(x_tf).numpy(),
    }
    if torch is not None:
        module = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(features, units, batch_first=True)
        w_ih, w_hh, b_ih, b_hh = _torch_weights(kind, *cell.get_weights())
        with torch.no_grad():
            module.weight_ih_l0.copy_(torch.tensor(w_ih))
            module.weight_hh_l0.copy_(torch.tensor(w_hh))
            module.bias_ih_l0.copy_(torch.tensor(b_ih))
            module.bias_hh_l0.copy_(torch.tensor(b_hh))
        state = {"value": None}
        xt = torch.tensor(x)

        def torch_step():
            with torch.no_grad():
                out, state["value"] = module(xt, state["value"])
            return out[:, -1].numpy()

        calls["pytorch (state carried)"] = torch_step
    # The same two steps from zero states on every runtime give the same outputs.
    outputs = {}
    for name, fn in calls.items():
        outputs[name] = [np.asarray(fn()).reshape(batch, units) for _ in range(2)]
    outputs = {name: np.concatenate(pair) for name, pair in outputs.items()}
    errors = _check(outputs, "tfrnn (module from Python)")
    first = {name: _first_call(fn) for name, fn in calls.items()}
    times = _interleaved(calls, repeats, 20)
    exported["reset"]()
    return {
        name: {
            **_summary(s),
            "median_us": float(np.median(s) * 1e6),
            "first_call_s": first[name],
            "max_abs_error_vs_tfrnn": errors[name],
        }
        for name, s in times.items()
    }


def bench_buckets(kind: str) -> dict:
    """50 distinct lengths in 1..500: how many calls compile (take >10x the steady time)."""
    lengths = sorted(set(np.random.default_rng(4).integers(1, 501, 200).tolist()))[:50]
    result = {}
    for label, buckets in (("no buckets", None), ("length_buckets=True", True)):
        rnn = tfrnn.RNN(_tfrnn_cell(kind, 32), length_buckets=buckets)
        serve = tf.function(
            lambda x, rnn=rnn: rnn(x), input_signature=[tf.TensorSpec([4, None, 16])]
        )
        times = []
        for length in lengths:
            x = tf.zeros([4, length, 16])
            start = time.perf_counter()
            serve(x).numpy()
            times.append(time.perf_counter() - start)
            start = time.perf_counter()
            serve(x).numpy()
            times[-1] = (times[-1], time.perf_counter() - start)
        compiles = sum(1 for first, second in times if first > 10 * second + 0.02)
        shapes = len({tfrnn.LengthBuckets().bucket(n) for n in lengths}) if buckets else len(lengths)
        result[label] = {
            "distinct_lengths": len(lengths),
            "distinct_shapes_compiled": shapes,
            "slow_first_calls": compiles,
            "total_s": float(sum(first for first, _ in times)),
        }
    return result


def memory_probe(peer: str, kind: str) -> float:
    """Peak RSS growth (MB) of one training step, in this process (run in a subprocess)."""
    libc = ctypes.CDLL("libc.so.6")
    peers = build_peers(kind, MEMORY_SHAPE)
    model, variables = peers[peer]
    batch, timesteps, features, units = MEMORY_SHAPE
    x = tf.constant(np.random.default_rng(5).standard_normal([batch, timesteps, features]).astype(np.float32))
    y = tf.constant(np.zeros([batch, units], np.float32))

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(x) - y) ** 2)
        for variable, grad in zip(variables, tape.gradient(loss, variables)):
            variable.assign_sub(0.01 * grad)
        return loss

    step(x, y).numpy()  # trace and compile outside the measurement
    del peers
    libc.malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    baseline = _status_kb("VmRSS")
    step(x, y).numpy()
    return (_status_kb("VmHWM") - baseline) / 1024.0


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def bench_memory(kind: str) -> dict:
    result = {}
    for peer in ("tfrnn", "tf-keras"):
        output = subprocess.run(
            [sys.executable, __file__, "--memory-probe", peer, "--cell", kind],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip().splitlines()[-1]
        result[peer] = {"peak_rss_growth_mb": float(output)}
    return result


# -- report ----------------------------------------------------------------------------------


def markdown(report: dict) -> str:
    lines = [f"Machine: {report['machine']}; matmul peak {report['matmul_peak_gflops']:.0f} GFLOP/s "
             "(2048x2048 float32). Medians of interleaved runs, ms, with the 10th-90th percentile."]
    for kind, sections in report["cells"].items():
        for section in ("inference", "training"):
            for shape, rows in sections.get(section, {}).items():
                lines += ["", f"### {kind.upper()} {section} {shape}", "",
                          "| peer | median ms | p10-p90 | vs tf-keras | % of peak | first call s | max err |",
                          "|---|---|---|---|---|---|---|"]
                for name, row in rows.items():
                    lines.append(
                        f"| {name} | {row['median_ms']:.3f} | {row['p10_ms']:.3f}-{row['p90_ms']:.3f} | "
                        f"{row['speedup_vs_tf_keras']:.2f}x | {100 * row['fraction_of_peak']:.0f}% | "
                        f"{row['first_call_s']:.2f} | {row['max_abs_error_vs_tfrnn']:.1e} |"
                    )
        if "streaming" in sections:
            lines += ["", f"### {kind.upper()} streaming step (batch 1, 64 inputs, 256 units)", "",
                      "| runtime | median us | p10-p90 ms | max err |", "|---|---|---|---|"]
            for name, row in sections["streaming"].items():
                lines.append(
                    f"| {name} | {row['median_us']:.0f} | {row['p10_ms']:.3f}-{row['p90_ms']:.3f} | "
                    f"{row['max_abs_error_vs_tfrnn']:.1e} |"
                )
        if "memory" in sections:
            lines += ["", f"### {kind.upper()} training-step peak memory {MEMORY_SHAPE}", ""]
            for name, row in sections["memory"].items():
                lines.append(f"- {name}: +{row['peak_rss_growth_mb']:.0f} MB peak RSS")
        if "buckets" in sections:
            lines += ["", f"### {kind.upper()} compiles for 50 distinct lengths in 1..500", ""]
            for name, row in sections["buckets"].items():
                lines.append(
                    f"- {name}: {row['distinct_shapes_compiled']} shapes compiled, "
                    f"{row['slow_first_calls']} slow first calls, {row['total_s']:.1f} s in all"
                )
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer shapes and repeats (<2 min)")
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--markdown", default="benchmark.md")
    parser.add_argument("--json", default="benchmark.json")
    parser.add_argument("--memory-probe", choices=["tfrnn", "tf-keras"], help=argparse.SUPPRESS)
    parser.add_argument("--cell", default="lstm", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        print(memory_probe(args.memory_probe, args.cell))
        return 0
    torch_threads = None
    if torch is not None:
        torch.set_num_threads(os.cpu_count())
        torch_threads = torch.get_num_threads()
    repeats = args.repeats or (9 if args.quick else 25)
    peak = matmul_peak_gflops()
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"TensorFlow {tf.__version__}, PyTorch {torch.__version__ if torch else 'absent'} "
        f"({torch_threads} threads)",
        "matmul_peak_gflops": peak,
        "cells": {},
    }
    for kind in args.cells.split(","):
        sections = report["cells"][kind] = {"inference": {}, "training": {}}
        shapes = INFERENCE_SHAPES[:2] if args.quick else INFERENCE_SHAPES
        for shape in shapes:
            print(f"{kind} inference {shape} ...", flush=True)
            sections["inference"][str(shape)] = bench_inference(kind, shape, repeats, peak, not args.quick)
        print(f"{kind} training {TRAIN_SHAPE} ...", flush=True)
        sections["training"][str(TRAIN_SHAPE)] = bench_training(kind, TRAIN_SHAPE, repeats, peak, not args.quick)
        print(f"{kind} streaming ...", flush=True)
        sections["streaming"] = bench_streaming(kind, repeats)
        if not args.quick:
            print(f"{kind} memory and buckets ...", flush=True)
            sections["memory"] = bench_memory(kind)
            sections["buckets"] = bench_buckets(kind)
    text = markdown(report)
    with open(args.markdown, "w") as f:
        f.write(text)
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
