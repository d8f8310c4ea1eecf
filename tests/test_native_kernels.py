"""native_kernels: when a bfloat16 fast-loop call leaves XLA, and that it computes the same."""

import numpy as np
import pytest
import tensorflow as tf

import tfrnn
from tfrnn._core import native_kernels, paths
from conftest import CALLERS, assert_close, call_in, random_array
from matrix import all_pairs, case_id

BF16 = tf.bfloat16


@pytest.fixture
def bf16_cpu(monkeypatch):
    """This machine counts as CPUs with bfloat16 instructions (CI's may not have them)."""
    monkeypatch.setattr(native_kernels, "cpus_with_bfloat16", lambda: True)


WINS = [
    # (dtype, batch, recurrent MACs per row, differentiated, expected)
    (BF16, 32, 2**20 // 32, True, True),
    (BF16, 32, 2**20 // 32 - 1, True, False),
    (BF16, 32, 2**24 // 32, False, True),
    (BF16, 32, 2**24 // 32 - 1, False, False),
    (BF16, None, 2**20 // native_kernels.ASSUMED_BATCH, True, True),
    (BF16, 1, 2**20 // 2, True, False),
    (tf.float32, 128, 2**24, True, False),
    (tf.float16, 128, 2**24, True, False),
    (BF16, 128, 0, True, False),
]


@pytest.mark.parametrize("dtype, batch, macs, differentiated, expected", WINS)
def test_native_wins_from_the_thresholds(bf16_cpu, dtype, batch, macs, differentiated, expected):
    assert native_kernels.native_wins(dtype, batch, lambda: macs, lambda: differentiated) is expected


def test_native_never_wins_without_bfloat16_cpus_or_inside_xla(monkeypatch, bf16_cpu):
    def wins():
        return native_kernels.native_wins(BF16, 128, lambda: 2**24, lambda: True)

    assert wins()
    assert not bool(tf.function(lambda: tf.constant(wins()), jit_compile=True)())
    monkeypatch.setattr(native_kernels, "cpus_with_bfloat16", lambda: False)
    assert not wins()


def test_a_float32_call_asks_nothing():
    def unasked():
        raise AssertionError("asked for a float32 call")

    assert not native_kernels.native_wins(tf.float32, 128, unasked, unasked)


@pytest.mark.parametrize(
    "batch, width, expected",
    [(256, 512, True), (255, 512, False), (64, 2048, True), (64, 2047, False),
     (None, 2**17 // native_kernels.ASSUMED_BATCH, True), (None, 2**17 // native_kernels.ASSUMED_BATCH - 1, False)],
)
def test_compiles_steps_from_the_pre_activations_per_step(batch, width, expected):
    assert native_kernels.compiles_steps(batch, width) is expected


@pytest.mark.parametrize(
    "flags, devices, expected",
    [(["fpu", "avx512_bf16"], ["CPU"], True), (["amx_bf16"], ["CPU"], True), (["fpu", "avx512f"], ["CPU"], False),
     (["avx512_bf16"], ["CPU", "GPU"], False), ([], ["CPU"], False)],
)
def test_cpus_with_bfloat16_reads_the_flags_and_the_devices(monkeypatch, flags, devices, expected):
    class Device:
        def __init__(self, kind):
            self.device_type = kind

    monkeypatch.setattr(native_kernels, "_cpu_flags", lambda: flags)
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda: [Device(d) for d in devices])
    native_kernels.cpus_with_bfloat16.cache_clear()
    try:
        assert native_kernels.cpus_with_bfloat16() is expected
    finally:
        native_kernels.cpus_with_bfloat16.cache_clear()


def test_cpu_flags_are_read_where_linux_reports_them():
    flags = native_kernels._cpu_flags()
    assert isinstance(flags, list) and all(isinstance(f, str) and f for f in flags)


# -- a bfloat16 call on the native kernels computes what float32 does, within bfloat16 -------

BATCH, TIME, FEATURES, UNITS = 32, 3, 4, 128  # 32 rows x 128 x 512 = 2**21 MACs: native for training
NUMERIC = all_pairs(
    {"cell": ("lstm", "gru"), "caller": CALLERS, "return_sequences": (False, True), "compiled_steps": (False, True)}
)


def _rnn(kind, dtype, return_sequences, **options):
    cell = tfrnn.LSTMCell(UNITS, compute_dtype=dtype) if kind == "lstm" else tfrnn.GRUCell(UNITS, compute_dtype=dtype)
    return tfrnn.RNN(cell, return_sequences=return_sequences, **options)


def _loss_and_gradients(rnn, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = tf.cast(rnn(x), tf.float32)
        loss = tf.reduce_sum(outputs * tf.cos(outputs))
    return [outputs, *tape.gradient(loss, [x] + list(rnn.trainable_variables))]


@pytest.mark.parametrize("case", NUMERIC, ids=case_id)
def test_bfloat16_training_on_the_native_kernels_matches_float32(bf16_cpu, monkeypatch, case):
    """Outputs and gradients of the bfloat16 call (native from a plain function or eagerly,
    with each step's gate math compiled where the steps are large enough, here forced; XLA
    from the caller's jit function) against a float32 unrolled generic loop, same weights."""
    if case["compiled_steps"]:
        monkeypatch.setattr(native_kernels, "COMPILED_STEPS_SIZE", 1)
    routes = []
    choose = paths.choose
    monkeypatch.setattr(paths, "choose", lambda *a: routes.append(choose(*a)) or routes[-1])
    x = tf.constant(random_array(1, BATCH, TIME, FEATURES) * 0.5)
    rnn = _rnn(case["cell"], BF16, case["return_sequences"])
    reference = _rnn(case["cell"], tf.float32, case["return_sequences"], unroll=True)
    rnn(x), reference(x)
    for variable, source in zip(rnn.trainable_variables, reference.trainable_variables):
        variable.assign(source * 0.5)
        source.assign(variable)
    actual = call_in(case["caller"], lambda x: _loss_and_gradients(rnn, x), x)
    expected = _loss_and_gradients(reference, x)
    native = paths.Path.NATIVE if case["compiled_steps"] else paths.Path.FAST
    wanted = paths.Route(native, False) if case["caller"] != "jit" else paths.Route(paths.Path.FAST, True)
    assert routes[-2] == wanted, routes  # the last call is the reference's
    for index, (a, e) in enumerate(zip(actual, expected)):
        e = np.asarray(e, np.float32)  # bfloat16 keeps 8 bits: 4% of the largest value
        assert_close(np.asarray(tf.cast(a, tf.float32)), e, 4e-2 * float(np.max(np.abs(e))), f"result {index}")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bfloat16_inference_with_compiled_steps_matches_float32(bf16_cpu, monkeypatch, kind):
    """No gradient: NATIVE_FORWARD, which keeps nothing for a backward pass."""
    monkeypatch.setattr(native_kernels, "COMPILED_STEPS_SIZE", 1)
    monkeypatch.setattr(native_kernels, "INFERENCE_MACS", 1)
    routes = []
    choose = paths.choose
    monkeypatch.setattr(paths, "choose", lambda *a: routes.append(choose(*a)) or routes[-1])
    x = tf.constant(random_array(2, BATCH, TIME, FEATURES) * 0.5)
    rnn = _rnn(kind, BF16, True, return_state=True)
    reference = _rnn(kind, tf.float32, True, return_state=True, unroll=True)
    rnn(x), reference(x)
    for variable, source in zip(rnn.trainable_variables, reference.trainable_variables):
        variable.assign(source * 0.5)
        source.assign(variable)
    actual = call_in("function", rnn, x)
    assert routes[-1] == paths.Route(paths.Path.NATIVE_FORWARD, False), routes
    for index, (a, e) in enumerate(zip(actual, reference(x))):
        e = np.asarray(e, np.float32)
        assert_close(np.asarray(tf.cast(a, tf.float32)), e, 4e-2 * float(np.max(np.abs(e))), f"result {index}")
