"""Side-by-side RNN benchmark: tfrnn against Keras 3, tf-keras and PyTorch, same weights.

Every peer runs in this one process, interleaved (round-robin over the peers, repeated), with
identical weights, and its outputs (or the gradient of the recurrent kernel) are checked
against tfrnn's before anything is timed. Scenarios: full-sequence inference and a training
step (forward + backward + SGD update), each with tfrnn called eagerly, from a plain
`tf.function` and from the caller's `jit_compile` function, Keras 3 as a layer in a
`jit_compile` function and as a model (`predict_on_batch`/`train_on_batch`, its default
`jit_compile="auto"`), tf-keras and PyTorch, in float32 and (at the largest shape of the run)
in bfloat16 mixed precision; one streaming step with carried state; peak memory of a long
training step; compile counts with and without length buckets.

The limit is measured in the same run: the best of TensorFlow's native (oneDNN) matmul and
XLA's, float32 and bfloat16, at 2048x2048 and at the shapes of the largest scenario; "% of
limit" divides by the best float32 rate of all of them. Reports medians with the 10th-90th
percentile spread, speed-ups over Keras 3 (jit) and tf-keras, first-call (trace + compile)
time; writes Markdown, JSON and a PNG chart of the speed-ups (with matplotlib installed).

    python tools/benchmark.py            # full run
    python tools/benchmark.py --quick    # a few minutes: fewer shapes and repeats, no unroll
    python tools/benchmark.py --smoke    # seconds: tiny shapes, for tests

PyTorch and matplotlib are optional (`pip install -e '.[benchmark]'`), never tfrnn
dependencies.
"""

from __future__ import annotations

import argparse
import ctypes
import io
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any, Callable, NamedTuple, Optional

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
TRAIN_SHAPES = [(32, 100, 64, 128), (128, 50, 256, 512)]
SMOKE_SHAPE = (2, 3, 4, 5)
STREAM_SHAPE = (1, 64, 256)  # batch, features, units
MEMORY_SHAPE = (32, 1000, 64, 128)
GATES = {"lstm": 4, "gru": 3}
TOLERANCE = 1e-4
# bfloat16 keeps 8 significant bits: outputs and gradients are checked against float32's
# relative to their largest magnitude.
BF16_TOLERANCE = 5e-2
PAUSE_BETWEEN_PEERS_S = 0.005
# A timed window of one peer lasts at least this long (up to MAX_CALLS_PER_WINDOW calls): a
# window of one short call measured the call after another peer's, with that peer's weights in
# the caches, not the peer's own steady state.
WINDOW_S = 0.02
MAX_CALLS_PER_WINDOW = 50
REFERENCE = "keras3 layer (jit)"


# -- timing ---------------------------------------------------------------------------------


def _interleaved(peers: dict[str, Callable[[], Any]], repeats: int, inner) -> dict:
    """Round-robin timing: each repeat calls every peer `inner` times (an int, or a count per
    peer); seconds per call.

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
            fn, calls = peers[name], inner if isinstance(inner, int) else inner[name]
            _spin(PAUSE_BETWEEN_PEERS_S)
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[name].append((time.perf_counter() - start) / calls)
    return {name: np.array(values) for name, values in samples.items()}


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _first_call(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _calls_per_window(fn: Callable[[], Any]) -> int:
    """How many calls of `fn`, already warm, fill one timed window of `WINDOW_S`."""
    seconds = min(_first_call(fn) for _ in range(2))
    return max(1, min(MAX_CALLS_PER_WINDOW, int(WINDOW_S / max(seconds, 1e-6))))


def _summary(seconds: np.ndarray) -> dict:
    return {
        "median_ms": float(np.median(seconds) * 1e3),
        "p10_ms": float(np.percentile(seconds, 10) * 1e3),
        "p90_ms": float(np.percentile(seconds, 90) * 1e3),
    }


# -- the limit: the machine's matmul rate --------------------------------------------------


def _matmul_rate(m: int, k: int, n: int, dtype: tf.DType, jit: bool, repeats: int) -> float:
    """GFLOP/s of `[m, k] @ [k, n]`, median of `repeats` timed windows."""
    rng = np.random.default_rng(0)
    a = tf.cast(tf.constant(rng.standard_normal([m, k]).astype(np.float32)), dtype)
    b = tf.cast(tf.constant(rng.standard_normal([k, n]).astype(np.float32)), dtype)
    fn = tf.function(lambda a, b: tf.matmul(a, b), jit_compile=jit, autograph=False)
    fn(a, b).numpy()
    first = _first_call(lambda: fn(a, b).numpy())
    inner = max(1, min(50, int(0.02 / max(first, 1e-6))))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            result = fn(a, b)
        result.numpy()
        times.append((time.perf_counter() - start) / inner)
    return 2.0 * m * k * n / float(np.median(times)) / 1e9


def matmul_shapes(shape: tuple, kind: str = "lstm") -> dict[str, tuple]:
    """The matmuls that bound a scenario `shape`, and the classic 2048^2, as `(m, k, n)`."""
    batch, timesteps, features, units = shape
    width = GATES[kind] * units
    return {
        "2048x2048x2048": (2048, 2048, 2048),
        f"input projection [{batch * timesteps},{features}]x[{features},{width}]": (
            batch * timesteps, features, width),
        f"recurrent step [{batch},{units}]x[{units},{width}]": (batch, units, width),
        f"weight gradient [{features + units},{batch * timesteps}]x[{batch * timesteps},{width}]": (
            features + units, batch * timesteps, width),
    }  # fmt: skip


def matmul_limits(shapes: dict[str, tuple], repeats: int) -> dict:
    """`{shape: {dtype: {"native": GFLOP/s, "xla": GFLOP/s}}}` and the best float32 rate."""
    table = {}
    for label, (m, k, n) in shapes.items():
        table[label] = {
            dtype.name: {
                backend: _matmul_rate(m, k, n, dtype, backend == "xla", repeats)
                for backend in ("native", "xla")
            }
            for dtype in (tf.float32, tf.bfloat16)
        }
    best = max(rate for row in table.values() for rate in row["float32"].values())
    return {"gflops": table, "best_float32_gflops": best}


def _forward_flops(kind: str, batch: int, timesteps: int, features: int, units: int) -> float:
    return 2.0 * batch * timesteps * (features + units) * GATES[kind] * units


# -- models with identical weights -----------------------------------------------------------


def _tfrnn_cell(kind: str, units: int, compute_dtype: Optional[tf.DType] = None):
    cls = tfrnn.LSTMCell if kind == "lstm" else tfrnn.GRUCell
    return cls(units, seed=0, compute_dtype=compute_dtype)


def _torch_weights(kind: str, kernel, recurrent_kernel, bias):
    """Keras layout -> PyTorch's: LSTM gates i,f,c,o match; GRU z,r,h -> r,z,n."""
    if kind == "lstm":
        return kernel.T, recurrent_kernel.T, bias, np.zeros_like(bias)

    def reorder(matrix):
        z, r, h = np.split(matrix, 3, axis=-1)
        return np.concatenate([r, z, h], axis=-1)

    return reorder(kernel).T, reorder(recurrent_kernel).T, reorder(bias[0]), reorder(bias[1])


def _torch_module(kind: str, features: int, units: int, weights: list):
    module = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(features, units, batch_first=True)
    w_ih, w_hh, b_ih, b_hh = _torch_weights(kind, *weights)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.tensor(w_ih))
        module.weight_hh_l0.copy_(torch.tensor(w_hh))
        module.bias_ih_l0.copy_(torch.tensor(b_ih))
        module.bias_hh_l0.copy_(torch.tensor(b_hh))
    return module


class Models(NamedTuple):
    """One scenario's models, all holding the same weights (Keras' layout)."""

    weights: list
    rnns: dict
    """`{"tfrnn": RNN, "tfrnn no-XLA": RNN, "tfrnn unroll": RNN}` (the last two in float32 only)."""
    tf_keras: Any
    keras3: Any
    """The Keras 3 layer."""
    keras3_model: Any
    """A compiled `keras.Sequential` of that layer, Keras' default `jit_compile="auto"`."""
    torch: Any


def build_models(kind: str, shape: tuple, bf16: bool = False, unroll: bool = False, weights=None) -> Models:
    """Every peer's model for `shape`; `bf16`: bfloat16 compute, float32 variables."""
    import keras  # Keras 3, on the TensorFlow backend

    _, timesteps, features, units = shape
    variants = [("tfrnn", {})]
    if not bf16:
        variants += [("tfrnn no-XLA", {"jit_compile": False})] + ([("tfrnn unroll", {"unroll": True})] if unroll else [])
    rnns = {}
    for name, options in variants:
        rnns[name] = tfrnn.RNN(_tfrnn_cell(kind, units, tf.bfloat16 if bf16 else None), **options)
        rnns[name].build([None, timesteps, features])
    weights = rnns["tfrnn"].cell.get_weights() if weights is None else weights
    for rnn in rnns.values():
        rnn.cell.set_weights(weights)
    policy = "mixed_bfloat16" if bf16 else "float32"
    keras2 = (tf_keras.layers.LSTM if kind == "lstm" else tf_keras.layers.GRU)(
        units, dtype=tf_keras.mixed_precision.Policy(policy)
    )
    keras2.build((None, timesteps, features))
    keras2.set_weights(weights)
    keras3 = (keras.layers.LSTM if kind == "lstm" else keras.layers.GRU)(units, dtype=policy)
    keras3.build((None, timesteps, features))
    keras3.set_weights(weights)
    model = keras.Sequential([keras.Input((timesteps, features)), keras3])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    module = _torch_module(kind, features, units, weights) if torch is not None else None
    return Models(weights, rnns, keras2, keras3, model, module)


def _variables(models: Models) -> dict:
    """The trainable variables of every TensorFlow model, kernel, recurrent kernel, bias."""
    result = {name: list(rnn.cell.weights) for name, rnn in models.rnns.items()}
    result["tf-keras"] = models.tf_keras.trainable_variables
    result["keras3"] = [v.value for v in models.keras3.trainable_variables]
    return result


def _float32(value) -> np.ndarray:
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().float().numpy()
    return np.asarray(tf.cast(value, tf.float32)) if isinstance(value, tf.Tensor) else np.asarray(value, np.float32)


class Peer(NamedTuple):
    """One row of a scenario: the timed call, and what runs once before timing."""

    call: Callable[[], Any]
    prepare: Callable[[], tuple]
    """`() -> (value checked against tfrnn's, first-call seconds)`."""


def _plain(call: Callable[[], Any], value: Optional[Callable[[], Any]] = None) -> Peer:
    """A peer whose first call is timed, then whose `value()` (or second call) is checked."""

    def prepare():
        first = _first_call(call)
        return _float32((value or call)()), first

    return Peer(call, prepare)


# -- scenarios -------------------------------------------------------------------------------


def _inference_peers(models: Models, x: np.ndarray, suffix: str) -> dict[str, Peer]:
    """Full-sequence inference, every calling mode; names end in `suffix` (" bf16")."""
    x_tf = tf.constant(x)
    rnn = models.rnns["tfrnn"]
    functions = {
        "tfrnn eager": rnn,
        "tfrnn tf.function": tf.function(lambda x: rnn(x), autograph=False),
        "tfrnn in user jit": tf.function(lambda x: rnn(x), jit_compile=True, autograph=False),
    }
    for name in ("tfrnn unroll", "tfrnn no-XLA"):
        if name in models.rnns:
            functions[name] = tf.function(lambda x, r=models.rnns[name]: r(x), autograph=False)
    functions["tf-keras"] = tf.function(lambda x: models.tf_keras(x), autograph=False)
    functions[REFERENCE] = tf.function(lambda x: models.keras3(x), jit_compile=True, autograph=False)
    peers = {name + suffix: _plain(lambda f=f: f(x_tf).numpy()) for name, f in functions.items()}
    peers["keras3 predict_on_batch" + suffix] = _plain(lambda: models.keras3_model.predict_on_batch(x))
    if models.torch is not None:
        xt, bf16 = torch.tensor(x), bool(suffix)

        def forward():
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out, _ = models.torch(xt)
            return out[:, -1]

        peers["pytorch" + suffix] = _plain(forward)
    return peers


def _tf_training(model, variables: list, jit: Optional[bool]) -> tuple[Callable, Callable]:
    """`(gradients(x, y), step(x, y))`: MSE of the last output, SGD; `jit=None`: eager."""

    def gradients(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((tf.cast(model(x), tf.float32) - y) ** 2)
        return tape.gradient(loss, variables)

    def step(x, y):
        for variable, grad in zip(variables, gradients(x, y)):
            variable.assign_sub(0.01 * grad)

    if jit is None:
        return gradients, step
    gradients = tf.function(gradients, jit_compile=jit, autograph=False)
    return gradients, tf.function(step, jit_compile=jit, autograph=False)


def _tf_training_peer(model, variables, jit, x, y) -> Peer:
    """The checked gradient, and the first step, whose update is then undone (peers share
    models: tfrnn's calling modes train one RNN)."""
    gradients, step = _tf_training(model, variables, jit)

    def prepare():
        before = [v.numpy() for v in variables]
        grad, first = gradients(x, y)[1].numpy(), _first_call(lambda: step(x, y))
        for variable, value in zip(variables, before):
            variable.assign(value)
        return grad, first

    return Peer(lambda: step(x, y), prepare)


def _train_on_batch_peer(model, layer, x: np.ndarray, y: np.ndarray) -> Peer:
    """`model.train_on_batch`; the checked gradient is read back from one SGD update."""

    def prepare():
        before = model.get_weights()
        first = _first_call(lambda: model.train_on_batch(x, y))
        recurrent = layer.get_weights()[1]
        model.set_weights(before)
        return (before[1] - recurrent) / 0.01, first

    return Peer(lambda: model.train_on_batch(x, y), prepare)


def _torch_training_peer(kind: str, module, x: np.ndarray, y: np.ndarray, bf16: bool) -> Peer:
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01)
    xt, yt = torch.tensor(x), torch.tensor(y)

    def step(update=True):
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out, _ = module(xt)
        loss = torch.mean((out[:, -1].float() - yt) ** 2)
        loss.backward()
        if update:
            optimizer.step()
        return module.weight_hh_l0.grad

    def prepare():
        grad = step(update=False).detach().numpy().T.copy()
        before = {k: v.clone() for k, v in module.state_dict().items()}
        first = _first_call(step)
        module.load_state_dict(before)
        return _torch_recurrent_grad(kind, grad), first

    return Peer(step, prepare)


def _torch_recurrent_grad(kind: str, grad_t: np.ndarray) -> np.ndarray:
    """PyTorch's d weight_hh, back in Keras' layout (for the equality check)."""
    if kind == "lstm":
        return grad_t
    r, z, h = np.split(grad_t, 3, axis=-1)
    return np.concatenate([z, r, h], axis=-1)


def _training_peers(kind: str, models: Models, x: np.ndarray, y: np.ndarray, suffix: str) -> dict:
    """A training step (forward, backward, SGD update), every calling mode."""
    x_tf, y_tf = tf.constant(x), tf.constant(y)
    variables = _variables(models)
    rnn = models.rnns["tfrnn"]
    peers = {
        "tfrnn eager": _tf_training_peer(rnn, variables["tfrnn"], None, x_tf, y_tf),
        "tfrnn tf.function": _tf_training_peer(rnn, variables["tfrnn"], False, x_tf, y_tf),
        "tfrnn in user jit": _tf_training_peer(rnn, variables["tfrnn"], True, x_tf, y_tf),
    }
    for name in ("tfrnn unroll", "tfrnn no-XLA"):
        if name in models.rnns:
            peers[name] = _tf_training_peer(models.rnns[name], variables[name], False, x_tf, y_tf)
    peers["tf-keras"] = _tf_training_peer(models.tf_keras, variables["tf-keras"], False, x_tf, y_tf)
    peers[REFERENCE] = _tf_training_peer(models.keras3, variables["keras3"], True, x_tf, y_tf)
    peers["keras3 train_on_batch"] = _train_on_batch_peer(models.keras3_model, models.keras3, x, y)
    if models.torch is not None:
        peers["pytorch"] = _torch_training_peer(kind, models.torch, x, y, bool(suffix))
    return {name + suffix: peer for name, peer in peers.items()}


def _check(values: dict, reference: str) -> dict:
    """Max abs error of each value against `reference`'s; bfloat16 rows relative to its max."""
    errors = {}
    scale = float(np.max(np.abs(values[reference])))
    for name, value in values.items():
        error = float(np.max(np.abs(np.asarray(value) - np.asarray(values[reference]))))
        errors[name] = error
        bf16 = name.endswith(" bf16")
        limit = BF16_TOLERANCE * scale if bf16 else TOLERANCE
        if not error <= limit:  # also catches NaN
            raise AssertionError(f"{name} disagrees with {reference}: max abs error {error:.2e} > {limit:.2e}")
    return errors


def bench_scenario(kind: str, section: str, shape: tuple, repeats: int, limit: float,
                   bf16: bool, unroll: bool) -> dict:
    """One scenario's rows: float32 peers, and bfloat16 ones with `bf16`, interleaved."""
    batch, timesteps, features, units = shape
    rng = np.random.default_rng(1 if section == "inference" else 2)
    x = rng.standard_normal([batch, timesteps, features]).astype(np.float32)
    y = rng.standard_normal([batch, units]).astype(np.float32)
    models = build_models(kind, shape, unroll=unroll)
    variants = [(models, "")]
    if bf16:
        variants.append((build_models(kind, shape, bf16=True, weights=models.weights), " bf16"))
    peers = {}
    for m, suffix in variants:
        if section == "inference":
            peers.update(_inference_peers(m, x, suffix))
        else:
            peers.update(_training_peers(kind, m, x, y, suffix))
    values, first = {}, {}
    for name, peer in peers.items():
        values[name], first[name] = peer.prepare()
    errors = _check(values, "tfrnn tf.function")
    inner = {name: _calls_per_window(peer.call) for name, peer in peers.items()}
    times = _interleaved({name: peer.call for name, peer in peers.items()}, repeats, inner)
    flops = _forward_flops(kind, *shape) * (1.0 if section == "inference" else 3.0)
    return _rows(times, first, errors, flops, limit)


def _rows(times, first, errors, flops, limit) -> dict:
    keras3 = np.median(times[REFERENCE])
    tf_keras_time = np.median(times["tf-keras"])
    rows = {}
    for name, seconds in times.items():
        median = float(np.median(seconds))
        rows[name] = {
            **_summary(seconds),
            "speedup_vs_keras3_jit": float(keras3 / median),
            "speedup_vs_tf_keras": float(tf_keras_time / median),
            "gflops": flops / median / 1e9,
            "fraction_of_limit": flops / median / 1e9 / limit,
            "first_call_s": first[name],
            "max_abs_error_vs_tfrnn": errors[name],
        }
    return rows


# -- streaming, compiles, memory --------------------------------------------------------------


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
        module = _torch_module(kind, features, units, cell.get_weights())
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
            lambda x, rnn=rnn: rnn(x), input_signature=[tf.TensorSpec([4, None, 16])], autograph=False
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
    models = build_models(kind, MEMORY_SHAPE)
    model = models.rnns["tfrnn"] if peer == "tfrnn" else models.tf_keras
    variables = _variables(models)[peer]
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
    del models
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


def _limits_markdown(limits: dict) -> list[str]:
    lines = ["", "### The limit: matmul GFLOP/s, TensorFlow's native kernel (oneDNN) and XLA", "",
             "| matmul | float32 native | float32 XLA | bfloat16 native | bfloat16 XLA |",
             "|---|---|---|---|---|"]  # fmt: skip
    for label, row in limits["gflops"].items():
        rates = [row[d][b] for d in ("float32", "bfloat16") for b in ("native", "xla")]
        lines.append(f"| {label} | " + " | ".join(f"{r:.0f}" for r in rates) + " |")
    lines += ["", f"% of limit: of the best float32 rate above, {limits['best_float32_gflops']:.0f} GFLOP/s."]
    return lines


def _scenario_markdown(title: str, rows: dict) -> list[str]:
    lines = ["", f"### {title}", "",
             "| peer | median ms | p10-p90 | vs Keras 3 (jit) | vs tf-keras | % of limit | first call s | max err "
             "| bf16 vs its float32 |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['median_ms']:.3f} | {row['p10_ms']:.3f}-{row['p90_ms']:.3f} | "
            f"{row['speedup_vs_keras3_jit']:.2f}x | {row['speedup_vs_tf_keras']:.2f}x | "
            f"{100 * row['fraction_of_limit']:.0f}% | {row['first_call_s']:.2f} | "
            f"{row['max_abs_error_vs_tfrnn']:.1e} | {_bf16_speedup(name, rows)} |"
        )
    return lines


def _bf16_speedup(name: str, rows: dict) -> str:
    """A bfloat16 row's float32 twin's time over its own (> 1: bfloat16 is faster)."""
    twin = rows.get(name[: -len(" bf16")]) if name.endswith(" bf16") else None
    return "-" if twin is None else f"{twin['median_ms'] / rows[name]['median_ms']:.2f}x"


def _other_markdown(kind: str, sections: dict) -> list[str]:
    lines = []
    if "streaming" in sections:
        lines += ["", f"### {kind.upper()} streaming step (batch 1, 64 inputs, 256 units)", "",
                  "| runtime | median us | p10-p90 ms | max err |", "|---|---|---|---|"]  # fmt: skip
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
    return lines


def scenarios(report: dict) -> list[tuple[str, dict]]:
    """`[(title, rows)]` of every timed inference and training scenario in `report`."""
    result = []
    for kind, sections in report["cells"].items():
        for section in ("inference", "training"):
            for shape, rows in sections.get(section, {}).items():
                result.append((f"{kind.upper()} {section} {shape}", rows))
    return result


def markdown(report: dict) -> str:
    lines = [f"Machine: {report['machine']}; load average {report['load']} at the start. Medians of "
             f"interleaved runs, ms, with the 10th-90th percentile; each sample is the mean call of a "
             f"window of at least {WINDOW_S * 1e3:.0f} ms."]  # fmt: skip
    lines += _limits_markdown(report["limits"])
    for title, rows in scenarios(report):
        lines += _scenario_markdown(title, rows)
    for kind, sections in report["cells"].items():
        lines += _other_markdown(kind, sections)
    return "\n".join(lines) + "\n"


def _color(name: str) -> str:
    for prefix, color in (("tfrnn", "#1f77b4"), ("keras3", "#ff7f0e"), ("tf-keras", "#7f7f7f"), ("pytorch", "#d62728")):
        if name.startswith(prefix):
            return color
    return "#2ca02c"


def write_chart(report: dict, path: str) -> bool:
    """A PNG of every scenario's speed-ups over Keras 3 (jit); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    panels = scenarios(report)
    columns = 2 if len(panels) > 1 else 1
    rows = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 0.25 * 14 * rows + 0.6), squeeze=False)
    for axis, (title, table) in zip(axes.flat, panels):
        names = list(table)[::-1]
        speedups = [table[n]["speedup_vs_keras3_jit"] for n in names]
        axis.barh(names, speedups, color=[_color(n) for n in names],
                  hatch=None, alpha=1.0, edgecolor="none")  # fmt: skip
        for bar, name in zip(axis.patches, names):
            if name.endswith(" bf16"):
                bar.set_alpha(0.55)
            axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {bar.get_width():.2f}x",
                      va="center", fontsize=6)  # fmt: skip
        axis.axvline(1.0, color="black", linewidth=0.8)
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xlim(min(speedups) / 2.0, max(speedups) * 2.0)  # every bar visible on a log axis
        axis.set_title(title, fontsize=9)
        axis.tick_params(labelsize=7)
    for axis in list(axes.flat)[len(panels):]:
        axis.set_visible(False)
    figure.suptitle("Speed-up over Keras 3 (layer in a jit_compile function); > 1 is faster", fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.98))
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=72)
    plt.close(figure)
    # A 64-colour palette keeps the chart small enough to commit (Pillow comes with matplotlib).
    from PIL import Image

    buffer.seek(0)
    Image.open(buffer).convert("RGB").quantize(64).save(path, optimize=True)
    return True


class RunPlan(NamedTuple):
    """What one run measures."""

    inference: list
    training: list
    repeats: int
    unroll: bool
    streaming: bool
    memory_and_buckets: bool
    limit_shapes: dict
    bf16_sections: tuple = ("inference", "training")
    """Sections that add bfloat16 rows at their largest shape."""


def run_plan(args: argparse.Namespace) -> RunPlan:
    """The scenarios of `--smoke`, `--quick` or a full run; bfloat16 rows at the largest shapes."""
    if args.smoke:
        shapes = {k: v for k, v in matmul_shapes(SMOKE_SHAPE).items() if not k.startswith("2048")}
        return RunPlan([SMOKE_SHAPE], [SMOKE_SHAPE], args.repeats or 2, False, False, False, shapes, ("inference",))
    if args.quick:
        return RunPlan(INFERENCE_SHAPES[:2], TRAIN_SHAPES[:1], args.repeats or 9, False, True, False,
                       matmul_shapes(INFERENCE_SHAPES[1]))  # fmt: skip
    return RunPlan(INFERENCE_SHAPES, TRAIN_SHAPES, args.repeats or 25, True, True, True,
                   matmul_shapes(INFERENCE_SHAPES[-1]))  # fmt: skip


def run(args: argparse.Namespace) -> dict:
    """The report of one run (see `run_plan`)."""
    plan = run_plan(args)
    torch_threads = None
    if torch is not None:
        torch.set_num_threads(args.torch_threads or os.cpu_count())
        torch_threads = torch.get_num_threads()
    limits = matmul_limits(plan.limit_shapes, max(3, plan.repeats // 2))
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"TensorFlow {tf.__version__}, PyTorch {torch.__version__ if torch else 'absent'} "
        f"({torch_threads} threads)",
        "load": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "limits": limits,
        "cells": {},
    }
    limit = limits["best_float32_gflops"]
    for kind in args.cells.split(","):
        sections = report["cells"][kind] = {"inference": {}, "training": {}}
        for section, shapes in (("inference", plan.inference), ("training", plan.training)):
            for shape in shapes:
                print(f"{kind} {section} {shape} ...", flush=True)
                sections[section][str(shape)] = bench_scenario(
                    kind, section, shape, plan.repeats, limit,
                    section in plan.bf16_sections and shape == shapes[-1], plan.unroll,
                )
        if plan.streaming:
            print(f"{kind} streaming ...", flush=True)
            sections["streaming"] = bench_streaming(kind, plan.repeats)
        if plan.memory_and_buckets:
            print(f"{kind} memory and buckets ...", flush=True)
            sections["memory"] = bench_memory(kind)
            sections["buckets"] = bench_buckets(kind)
    report["load_at_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return report


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer shapes and repeats")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, two repeats (tests)")
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--markdown", default="benchmark.md")
    parser.add_argument("--json", default="benchmark.json")
    parser.add_argument("--chart", default="benchmark.png", help="PNG of the speed-ups (needs matplotlib)")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="PyTorch's threads (default: every core; 1 on a machine others load)")
    parser.add_argument("--from-json", help="rewrite the Markdown and the chart of a saved report")
    parser.add_argument("--memory-probe", choices=["tfrnn", "tf-keras"], help=argparse.SUPPRESS)
    parser.add_argument("--cell", default="lstm", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        print(memory_probe(args.memory_probe, args.cell))
        return 0
    if args.from_json:
        with open(args.from_json) as f:
            report = json.load(f)
    else:
        report = run(args)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    text = markdown(report)
    with open(args.markdown, "w") as f:
        f.write(text)
    if not write_chart(report, args.chart):
        print("matplotlib is not installed: no chart", file=sys.stderr)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
