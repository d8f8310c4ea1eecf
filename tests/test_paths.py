"""paths: which loop runs a call (`choose`), and every loop path against the generic loop."""

import contextlib

import pytest
import tensorflow as tf

import tfrnn
from tfrnn._core import native_kernels, paths, trace_context
from tfrnn._core.cell_adapter import CellAdapter
from tfrnn._core.plan import make_plan
from tfrnn._deploy import composite_lstm
from conftest import assert_close, call_in, random_array, random_mask
from matrix import all_pairs, case_id

Path = paths.Path


def _options(**overrides):
    values = dict(return_sequences=False, go_backwards=False, zero_output_for_mask=False, unroll=False, jit_compile=True)
    return paths.LoopOptions(**{**values, **overrides})


def _cell(kind, units=2):
    if kind == "lstm":
        return tfrnn.LSTMCell(units, seed=1)
    if kind == "gru_reset_before":
        return tfrnn.GRUCell(units, reset_after=False, seed=1)
    if kind == "recurrent_dropout":
        return tfrnn.LSTMCell(units, recurrent_dropout=0.5, seed=1)
    if kind == "lstm_bf16":
        return tfrnn.LSTMCell(units, compute_dtype=tf.bfloat16, seed=1)
    if kind == "stacked":
        return tfrnn.StackedRNNCells([tfrnn.LSTMCell(units, seed=1), tfrnn.GRUCell(units, seed=2)])
    raise ValueError(kind)


def _route(kind, context, batch=2, training=False, graph=False, tape=False, time=4, units=2, jit=False, watch=False,
           **options):
    adapter = CellAdapter(_cell(kind, units))
    adapter.build(tf.TensorShape([batch, 3]))
    rnn = tfrnn.RNN(adapter.cell)
    routes = []

    def choose(inputs):
        plan = make_plan(adapter, inputs, training=training)
        call = trace_context.RNNCall(rnn, plan.inputs, None, None, False)
        routes.append(paths.choose(_options(**options), adapter, plan, context, call))
        return inputs

    spec = tf.TensorSpec([batch, time, 3])
    with tf.GradientTape() if tape else contextlib.nullcontext() as recording:
        if graph:
            tf.function(choose, jit_compile=jit).get_concrete_function(spec)
        else:
            inputs = tf.zeros([batch or 1, time or 4, 3])
            if watch:
                recording.watch(inputs)
            choose(inputs)
    return routes[0]


CHOOSE_CASES = [
    # (cell, context, call, expected route)
    ("lstm", {}, {}, paths.Route(Path.FAST, True)),
    ("lstm", {}, {"jit_compile": False}, paths.Route(Path.FAST, False)),
    ("lstm", {"jit_compile": False}, {}, paths.Route(Path.FAST, False)),
    ("lstm", {}, {"unroll": True}, paths.Route(Path.UNROLLED, True)),
    ("gru_reset_before", {}, {}, paths.Route(Path.RECOMPUTE, True)),
    ("gru_reset_before", {}, {"jit_compile": False}, paths.Route(Path.WHILE, False)),
    ("gru_reset_before", {"jit_compile": True}, {"jit_compile": False}, paths.Route(Path.RECOMPUTE, True)),
    ("recurrent_dropout", {}, {"training": True}, paths.Route(Path.RECOMPUTE, True)),
    ("recurrent_dropout", {}, {"training": False}, paths.Route(Path.FAST, True)),
    ("stacked", {}, {}, paths.Route(Path.RECOMPUTE, True)),
    # Traced with an unknown batch or time while a tape records: TF 2.21's XLA cannot compile
    # the gradient of the generic loop; inference keeps XLA, and so does the fast loop.
    ("stacked", {}, {"batch": None, "graph": True, "tape": True}, paths.Route(Path.WHILE, False)),
    ("stacked", {}, {"time": None, "graph": True, "tape": True}, paths.Route(Path.WHILE, False)),
    ("recurrent_dropout", {}, {"training": True, "batch": None, "graph": True, "tape": True}, paths.Route(Path.WHILE, False)),
    ("stacked", {}, {"batch": None, "time": None, "graph": True}, paths.Route(Path.RECOMPUTE, True)),
    ("stacked", {}, {"batch": 2, "graph": True, "tape": True}, paths.Route(Path.RECOMPUTE, True)),
    ("stacked", {}, {"batch": 2, "tape": True}, paths.Route(Path.RECOMPUTE, True)),
    ("lstm", {}, {"batch": None, "time": None, "graph": True, "tape": True}, paths.Route(Path.SPLIT, False)),
    # The fast loop traced outside the caller's jit function splits its backward pass at the XLA
    # boundary where a gradient may be taken; inside it, eagerly, or asked for by the context
    # (export's), it stays one XLA function.
    ("lstm", {}, {"graph": True, "tape": True}, paths.Route(Path.SPLIT, False)),
    ("lstm", {}, {"graph": True, "training": True}, paths.Route(Path.SPLIT, False)),
    ("lstm", {}, {"graph": True}, paths.Route(Path.FAST, True)),
    ("lstm", {}, {"graph": True, "tape": True, "jit": True}, paths.Route(Path.FAST, True)),
    ("lstm", {}, {"tape": True, "watch": True}, paths.Route(Path.FAST, True)),
    ("lstm", {"jit_compile": True}, {"graph": True, "tape": True}, paths.Route(Path.FAST, True)),
    ("lstm", {}, {"graph": True, "tape": True, "jit_compile": False}, paths.Route(Path.FAST, False)),
    # A training call counts as differentiated (no tape needed) for that rule.
    ("stacked", {}, {"training": True, "batch": None, "graph": True}, paths.Route(Path.WHILE, False)),
    ("gru_reset_before", {}, {"training": True, "batch": None, "graph": True}, paths.Route(Path.WHILE, False)),
    ("lstm", {"builtin_only": True}, {}, paths.Route(Path.DENSE, False)),
    ("gru_reset_before", {"builtin_only": True}, {"unroll": True}, paths.Route(Path.DENSE, False)),
    ("lstm", {"stream": object()}, {}, paths.Route(Path.STREAM, True)),
    ("lstm", {"stream": object(), "builtin_only": True}, {}, paths.Route(Path.STREAM, False)),
    ("stacked", {"stream": object(), "jit_compile": False}, {}, paths.Route(Path.STREAM, False)),
]


@pytest.mark.parametrize("kind, context, call, expected", CHOOSE_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CHOOSE_CASES)])
def test_choose_picks_the_route_the_table_gives(kind, context, call, expected):
    # The path and XLA; `input_gradient` has its own test below.
    assert _route(kind, trace_context.TraceContext(**context), **call)[:2] == expected[:2]


@pytest.mark.parametrize(
    "kind, call, expected",
    [
        ("lstm", {}, False),  # eager, no tape
        ("lstm", {"tape": True}, False),  # eager, the tape watches only variables
        ("lstm", {"tape": True, "watch": True}, True),
        ("lstm", {"tape": True, "graph": True}, True),  # a trace is reused under other tapes
        ("lstm", {"graph": True}, True),
        ("lstm_bf16", {"batch": 256, "tape": True}, False),  # NATIVE
        ("stacked", {"tape": True}, True),  # the generic loop differentiates as TensorFlow does
    ],
)
def test_the_inputs_gradient_is_left_out_only_eagerly_where_no_tape_watches_them(monkeypatch, kind, call, expected):
    monkeypatch.setattr(native_kernels, "cpus_with_bfloat16", lambda: True)
    units = 128 if kind == "lstm_bf16" else 2
    assert _route(kind, trace_context.TraceContext(), units=units, **call).input_gradient is expected


NATIVE_CASES = [
    # A bfloat16 LSTM of 128 units (128 x 512 MACs per row) on CPUs with bfloat16 instructions:
    # native from 2**20 MACs per step with a gradient, from 2**24 without.
    ("lstm_bf16", {}, {"batch": 32, "tape": True}, paths.Route(Path.FAST, False)),
    ("lstm_bf16", {}, {"batch": 32, "training": True, "graph": True}, paths.Route(Path.FAST, False)),
    ("lstm_bf16", {}, {"batch": None, "graph": True, "tape": True}, paths.Route(Path.FAST, False)),
    ("lstm_bf16", {}, {"batch": 32}, paths.Route(Path.FAST, True)),
    # From 2**17 pre-activations per step (256 rows x 512) each step's gate math is compiled
    # (NATIVE), and without a gradient nothing is kept for one (NATIVE_FORWARD).
    ("lstm_bf16", {}, {"batch": 256}, paths.Route(Path.NATIVE_FORWARD, False)),
    ("lstm_bf16", {}, {"batch": 256, "tape": True}, paths.Route(Path.NATIVE, False)),
    ("lstm_bf16", {}, {"batch": 256, "training": True, "graph": True}, paths.Route(Path.NATIVE, False)),
    ("lstm_bf16", {}, {"batch": 255, "tape": True}, paths.Route(Path.FAST, False)),
    ("lstm_bf16", {}, {"batch": 8, "tape": True}, paths.Route(Path.FAST, True)),
    ("lstm", {}, {"batch": 256, "tape": True}, paths.Route(Path.FAST, True)),
    ("lstm_bf16", {}, {"batch": 32, "tape": True, "jit_compile": False}, paths.Route(Path.FAST, False)),
    # The caller's jit function, and an XLA variant export asks for, stay in XLA.
    ("lstm_bf16", {}, {"batch": 32, "tape": True, "graph": True, "jit": True}, paths.Route(Path.FAST, True)),
    ("lstm_bf16", {"jit_compile": True}, {"batch": 32, "tape": True}, paths.Route(Path.FAST, True)),
    ("lstm_bf16", {"builtin_only": True}, {"batch": 32, "tape": True}, paths.Route(Path.DENSE, False)),
]


@pytest.mark.parametrize("kind, context, call, expected", NATIVE_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(NATIVE_CASES)])
def test_bfloat16_leaves_xla_where_the_native_kernels_win(monkeypatch, kind, context, call, expected):
    monkeypatch.setattr(native_kernels, "cpus_with_bfloat16", lambda: True)
    assert _route(kind, trace_context.TraceContext(**context), units=128, **call)[:2] == expected[:2]
    monkeypatch.setattr(native_kernels, "cpus_with_bfloat16", lambda: False)
    fallback = _route(kind, trace_context.TraceContext(**context), units=128, **call)[:2]
    if expected.path is Path.DENSE or not call.get("jit_compile", True):
        assert fallback == (expected.path, False)
    else:  # XLA: the fast loop in one compiled function, or SPLIT's two
        assert fallback in {(Path.FAST, True), (Path.SPLIT, False)}


class _Everything:
    """A substitute that takes every call (what TFLite's FusedLSTM does for the ones it can)."""

    def takes(self, call):
        return True

    def __call__(self, call):
        return call.inputs


def test_a_substitute_that_takes_the_call_wins():
    context = trace_context.TraceContext(substitute=_Everything(), jit_compile=True)
    assert _route("lstm", context) == paths.Route(Path.SUBSTITUTE, False)
    context = trace_context.TraceContext(substitute=composite_lstm.FusedLSTM())
    assert _route("gru_reset_before", context).path is Path.RECOMPUTE  # FusedLSTM declines a GRU


@pytest.mark.parametrize(
    "kind, training",
    [
        ("gru_reset_before", True), ("gru_reset_before", False), ("recurrent_dropout", False),
        ("stacked", True), ("stacked", False), ("lstm", True), ("lstm", False),  # lstm: SPLIT
    ],
)
def test_a_gradient_traced_with_an_unknown_batch_runs_and_matches_eager(kind, training):
    """`fit`'s last partial batch: the route `choose` picks must be one TF can differentiate,
    also for `training=False` (Keras 3 trains subclassed models with `training=None`)."""
    rnn = tfrnn.RNN(_cell(kind), return_sequences=True)
    inputs = tf.constant(random_array(3, 3, 4, 3))
    rnn(inputs)

    def gradients(x):
        with tf.GradientTape() as tape:
            # Recurrent dropout at rate 0.5 draws masks per call: compared switched off.
            outputs = rnn(x, training=training)
            loss = tf.reduce_sum(outputs * outputs)
        return tape.gradient(loss, rnn.trainable_variables)

    traced = tf.function(gradients, input_signature=[tf.TensorSpec([None, None, 3])])
    expected = gradients(inputs)
    for actual, wanted in zip(traced(inputs), expected):
        assert_close(actual, wanted, 1e-5, kind)
    if kind == "recurrent_dropout":  # and with dropout on (masks differ per call: finite only)

        @tf.function(input_signature=[tf.TensorSpec([None, None, 3])])
        def training(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(rnn(x, training=True))
            return tape.gradient(loss, rnn.trainable_variables)

        assert all(bool(tf.reduce_all(tf.math.is_finite(g))) for g in training(inputs))


@pytest.mark.parametrize("caller", ["eager", "function", "jit"])
def test_a_stack_passes_the_inputs_gradient_back_from_every_caller(caller):
    """The second layer's inputs' gradient reaches the first layer's weights: from a plain
    `tf.function` under a tape both layers run SPLIT, whose inputs' gradient is a native op
    outside its compiled functions. Against a Python loop over the cells."""
    first = tfrnn.RNN(tfrnn.LSTMCell(3, seed=1), return_sequences=True, go_backwards=True)
    second = tfrnn.RNN(tfrnn.GRUCell(2, seed=2))
    inputs = tf.constant(random_array(4, 2, 5, 3))
    second(first(inputs))
    variables = first.trainable_variables + second.trainable_variables

    def gradients(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(second(first(x)) ** 2)
        return tape.gradient(loss, variables)

    def reference(x):
        with tf.GradientTape() as tape:
            states, outputs = [tf.zeros([2, 3]), tf.zeros([2, 3])], []
            for t in reversed(range(5)):
                output, states = first.cell(x[:, t], states)
                outputs.append(output)
            state = [tf.zeros([2, 2])]
            for output in outputs:
                last, state = second.cell(output, state)
            loss = tf.reduce_sum(last**2)
        return tape.gradient(loss, variables)

    for actual, wanted, variable in zip(call_in(caller, gradients, inputs), reference(inputs), variables):
        assert_close(actual, wanted, 1e-5, f"{caller}: {variable.name}")


# -- every loop path against the generic loop, where it is chosen ------------------------------

FEATURES, UNITS, TIME = 3, 4, 5
PARITY = all_pairs(
    {
        "path": (
            Path.FAST, Path.SPLIT, Path.NATIVE, Path.NATIVE_FORWARD, Path.RECOMPUTE, Path.UNROLLED,
            Path.DENSE, Path.STREAM,
        ),
        "batch": (1, 16, 32, 33),
        "cell": ("lstm", "gru", "simple"),
        "mask": (False, True),
        "direction": ("forwards", "backwards"),
        "return_sequences": (False, True),
    }
) + [  # the two-chain fast loop with every option at once
    dict(path=path, batch=batch, cell=cell, mask=True, direction="backwards", return_sequences=True)
    for path in (Path.FAST, Path.SPLIT) for batch in (32, 33) for cell in ("lstm", "gru")
]


def _parity_cell(kind):
    return {
        "lstm": tfrnn.LSTMCell(UNITS, seed=3),
        "gru": tfrnn.GRUCell(UNITS, seed=3),
        "simple": tfrnn.SimpleRNNCell(UNITS, seed=3),
    }[kind]


@pytest.mark.parametrize("case", PARITY, ids=case_id)
def test_every_path_equals_the_generic_loop_forward_and_backward(case):
    """Under jit_compile (batches from 16 up run the fast loop as two chains; the SPLIT and
    NATIVE paths in a plain function, as they run), outputs and the gradients of inputs, initial
    states and weights equal the plain while loop's. NATIVE_FORWARD has no backward pass of its
    own: TensorFlow differentiates its loop, should a gradient be taken after all."""
    batch, backwards = case["batch"], case["direction"] == "backwards"
    options = _options(return_sequences=case["return_sequences"], go_backwards=backwards)
    adapter = CellAdapter(_parity_cell(case["cell"]))
    adapter.build(tf.TensorShape([batch, FEATURES]))
    assert adapter.fast_loop_spec(False) is not None
    inputs = tf.constant(random_array(1, batch, TIME, FEATURES))
    mask = random_mask(2, batch, TIME) if case["mask"] else None
    if mask is not None and case["path"] is Path.STREAM:
        # STREAM repeats the initial output state (not zeros) at a row's leading masked
        # steps, by design; with the first processed step unmasked it is the generic loop.
        mask[:, -1 if backwards else 0] = True
    states = [tf.constant(random_array(3 + i, batch, UNITS)) for i in range(len(adapter.flat_state_shapes))]
    weights = list(adapter.trainable_variables())
    cotangent = random_array(9, batch, *([TIME] if case["return_sequences"] else []), UNITS)
    def run(path, x, initial):
        plan = make_plan(adapter, x, None if mask is None else tf.constant(mask))
        with tf.GradientTape() as tape:
            tape.watch([x] + initial)
            output, final = paths.RUNNERS[path](adapter, options, plan, initial, None)
            loss = tf.reduce_sum(output * cotangent) + sum(tf.reduce_sum(s * (i + 1)) for i, s in enumerate(final))
        grads = tape.gradient(loss, [x] + initial + weights)
        return output, final, grads

    jit = case["path"] not in (Path.SPLIT, Path.NATIVE, Path.NATIVE_FORWARD)
    compiled = tf.function(lambda x, *s: run(case["path"], x, list(s)), jit_compile=jit, autograph=False)
    output, final, grads = compiled(inputs, *states)
    ref_output, ref_final, ref_grads = run(Path.WHILE, inputs, states)
    assert_close(output, ref_output, 2e-5, "output")
    for index, (state, ref) in enumerate(zip(final, ref_final)):
        assert_close(state, ref, 2e-5, f"final state {index}")
    assert len(grads) == len(ref_grads) == 1 + len(states) + len(weights)
    for index, (grad, ref) in enumerate(zip(grads, ref_grads)):
        assert_close(grad, ref, 1e-4, f"gradient {index}")
