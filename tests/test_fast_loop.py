"""The fast loop (`_core.fast_loop`) against the generic loop `tfrnn.loop.rnn_loop`.

tests/test_paths.py checks every path against the generic loop under jit_compile; these are
the fast loop's own cases: every caller, every kind of VJP (the cells' saved activations,
GRU's hand-written VJP, a GradientTape for activations without a known derivative), gradients
of the outputs alone and of the states alone, zero timesteps, and the two-chain split rule.
"""

import numpy as np
import pytest
import tensorflow as tf

import tfrnn
from conftest import CALLERS, assert_close, random_array, random_mask
from matrix import all_pairs, case_id
from tfrnn._core import fast_loop
from tfrnn._core.builtin_cell import INPUTS, FastLoopSpec, Projection
from tfrnn.loop import rnn_loop

FEATURES, UNITS, TIME = 3, 4, 5


def _cell(kind):
    cell = {
        "lstm": lambda: tfrnn.LSTMCell(UNITS, seed=3),
        "gru": lambda: tfrnn.GRUCell(UNITS, seed=3),
        "simple": lambda: tfrnn.SimpleRNNCell(UNITS, seed=3),
        # No derivative known for softsign: the backward pass differentiates with a tape.
        "lstm_tape": lambda: tfrnn.LSTMCell(UNITS, activation="softsign", seed=3),
        "gru_tape": lambda: tfrnn.GRUCell(UNITS, activation="softsign", seed=3),
    }[kind]()
    cell.build(tf.TensorShape([None, FEATURES]))
    for index, variable in enumerate(cell.trainable_variables):  # a non-zero bias too
        variable.assign(random_array(30 + index, *variable.shape) * 0.5)
    return cell


def _states(cell, batch):
    count = len(cell.state_size) if isinstance(cell.state_size, list) else 1
    return [tf.constant(random_array(3 + i, batch, UNITS)) for i in range(count)]


def _loss(output, final_states, cotangent, which):
    """A loss that reads the output, the final states, or both (the others get no gradient)."""
    loss = 0.0
    if which in ("output", "both"):
        loss += tf.reduce_sum(output * cotangent)
    if which in ("states", "both"):
        loss += sum(tf.reduce_sum(s * (i + 1.0)) for i, s in enumerate(final_states))
    return loss


def _run(loop, cell, inputs, states, cotangent, which):
    """`(output, final_states, gradients of [inputs, *states, *weights])` of `loop`."""
    with tf.GradientTape() as tape:
        tape.watch([inputs] + states)
        output, final_states = loop(inputs, states)
        loss = _loss(output, final_states, cotangent, which)
    return output, final_states, tape.gradient(loss, [inputs] + states + list(cell.trainable_variables))


def _fast(cell, options):
    return lambda inputs, states: fast_loop.run_fast_loop(cell.fast_loop_spec(), inputs, states, **options)


def _generic(cell, options):
    def loop(inputs, states):
        result = rnn_loop(lambda x_t, s: cell(x_t, s), inputs, states, **options)
        return (result.outputs if options["return_sequences"] else result.last_output), result.final_states

    return loop


def _traced(caller, fn, inputs, states):
    """`fn(inputs, states)` in a `tf.function`: plain, jit, or jit with unknown timesteps."""
    signature = None
    if caller.endswith("_dynamic"):
        signature = [tf.TensorSpec([inputs.shape[0], None] + inputs.shape[2:].as_list())] + [
            tf.TensorSpec(s.shape, s.dtype) for s in states
        ]
    compiled = tf.function(
        lambda x, *s: fn(x, list(s)),
        input_signature=signature,
        jit_compile=caller.startswith("jit"),
        autograph=False,
    )
    return compiled(inputs, *states)


def _fast_in(caller, cell, options, inputs, states, cotangent, which):
    """The fast loop and its gradient as `caller` runs them.

    It always runs traced (the RNN traces each path): "eager" is an eager tape around a jit
    function, as when an RNN is called eagerly; the others trace the tape too.
    """
    if caller == "eager":
        loop = lambda x, s: _traced("jit", _fast(cell, options), x, s)  # noqa: E731
        return _run(loop, cell, inputs, states, cotangent, which)
    run = lambda x, s: _run(_fast(cell, options), cell, x, s, cotangent, which)  # noqa: E731
    return _traced(caller, run, inputs, states)


def _assert_all_close(actual, expected, atol):
    output, final_states, grads = actual
    ref_output, ref_final_states, ref_grads = expected
    assert_close(output, ref_output, atol, "output")
    assert len(final_states) == len(ref_final_states)
    for index, (state, ref) in enumerate(zip(final_states, ref_final_states)):
        assert_close(state, ref, atol, f"final state {index}")
    assert len(grads) == len(ref_grads)
    for index, (grad, ref) in enumerate(zip(grads, ref_grads)):
        assert grad is not None, f"gradient {index} is None"
        ref = np.zeros(grad.shape, np.float32) if ref is None else ref  # unconnected: zeros
        assert_close(grad, ref, 10 * atol, f"gradient {index}")


def _options(case, batch, mask):
    return dict(
        output_spec=tf.TensorSpec([batch, UNITS], tf.float32),
        mask=None if mask is None else tf.constant(mask),
        go_backwards=case["direction"] == "backwards",
        zero_output_for_mask=case["zero_output_for_mask"],
        return_sequences=case["return_sequences"],
    )


MATRIX = all_pairs(
    {
        "cell": ("lstm", "gru", "simple", "lstm_tape", "gru_tape"),
        "caller": CALLERS + ("jit_dynamic",),
        "batch": (2, 17),  # 17 rows run as two chains (9 + 8) under jit
        "mask": (False, True),
        "direction": ("forwards", "backwards"),
        "return_sequences": (False, True),
        "zero_output_for_mask": (False, True),
        "loss": ("both", "output", "states"),
    }
)


@pytest.mark.parametrize("case", MATRIX, ids=case_id)
def test_outputs_and_gradients_equal_the_generic_loop(case):
    """Gradients of every input of the custom gradient: inputs, initial states, weights."""
    cell, batch = _cell(case["cell"]), case["batch"]
    inputs = tf.constant(random_array(1, batch, TIME, FEATURES))
    states = _states(cell, batch)
    mask = random_mask(2, batch, TIME) if case["mask"] else None
    options = _options(case, batch, mask)
    shape = [batch, TIME, UNITS] if case["return_sequences"] else [batch, UNITS]
    cotangent = tf.constant(random_array(9, *shape))

    actual = _fast_in(case["caller"], cell, options, inputs, states, cotangent, case["loss"])
    expected = _run(_generic(cell, options), cell, inputs, states, cotangent, case["loss"])
    _assert_all_close(actual, expected, 1e-5)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_inference_without_a_tape_equals_the_generic_loop(caller, kind):
    cell, batch = _cell(kind), 17
    inputs = tf.constant(random_array(1, batch, TIME, FEATURES))
    states = _states(cell, batch)
    case = dict(direction="forwards", zero_output_for_mask=False, return_sequences=True)
    options = _options(case, batch, random_mask(2, batch, TIME))
    if caller == "eager":  # a direct eager call (the RNN's paths are always traced)
        output, final_states = _fast(cell, options)(inputs, states)
    else:
        output, final_states = _traced(caller, _fast(cell, options), inputs, states)
    ref_output, ref_final_states = _generic(cell, options)(inputs, states)
    assert_close(output, ref_output, 1e-5, "output")
    for index, (state, ref) in enumerate(zip(final_states, ref_final_states)):
        assert_close(state, ref, 1e-5, f"final state {index}")


ZERO_STEPS = all_pairs(
    {
        "cell": ("lstm", "gru"),
        # XLA cannot compile the loops for zero steps (their reads of step 0 fail to compile).
        "caller": ("function", "function_dynamic"),
        "mask": (False, True),
        "return_sequences": (False, True),
    }
)


@pytest.mark.parametrize("case", ZERO_STEPS, ids=case_id)
def test_zero_timesteps_forward_and_backward(case):
    """No step runs: the states pass through, and so do their gradients; the rest is zeros."""
    cell, batch = _cell(case["cell"]), 2
    inputs = tf.zeros([batch, 0, FEATURES])
    states = _states(cell, batch)
    mask = np.zeros([batch, 0], bool) if case["mask"] else None
    options = _options(dict(case, direction="forwards", zero_output_for_mask=False), batch, mask)
    shape = [batch, 0, UNITS] if case["return_sequences"] else [batch, UNITS]
    cotangent = tf.constant(random_array(9, *shape))

    run = lambda x, s: _run(_fast(cell, options), cell, x, s, cotangent, "both")  # noqa: E731
    output, final_states, grads = _traced(case["caller"], run, inputs, states)
    expected = _run(_generic(cell, options), cell, inputs, states, cotangent, "both")
    if not case["mask"] and not case["return_sequences"]:
        # Without a mask the last output is the output state h itself: at zero steps its
        # initial value, where rnn_loop returns zeros; its gradient joins h's.
        ref_grads = list(expected[2])
        ref_grads[1] = ref_grads[1] + cotangent
        expected = (states[0], expected[1], ref_grads)
    _assert_all_close((output, final_states, grads), expected, 1e-6)


CHAIN_CASES = [
    # (static batch, pre-activation width per step, chains under XLA)
    (None, 512, [(0, None)]),
    (1, 512, [(0, None)]),
    (15, 512, [(0, None)]),
    (16, 512, [(0, 8), (8, 8)]),
    (33, 512, [(0, 17), (17, 16)]),
    (64, 512, [(0, 32), (32, 32)]),
    (16, 2048, [(0, 8), (8, 8)]),  # 16 * 2048 = 32K: still two
    (16, 2049, [(0, None)]),  # wider steps' matmuls already use both cores
    (128, 2048, [(0, None)]),
]


@pytest.mark.parametrize("batch, width, expected", CHAIN_CASES)
def test_two_chains_only_under_xla_for_a_static_batch_of_narrow_steps(batch, width, expected):
    traced = {}

    def trace(jit_compile):
        def record():
            traced[jit_compile] = fast_loop._chains(batch, width)
            return tf.constant(0)

        tf.function(record, jit_compile=jit_compile, autograph=False).get_concrete_function()
        return traced[jit_compile]

    assert [tuple(chain) for chain in trace(True)] == expected
    assert [tuple(chain) for chain in trace(False)] == [(0, None)]
    assert [tuple(chain) for chain in fast_loop._chains(batch, width)] == [(0, None)]


def test_chain_rows_slice_the_batch_axis():
    tensor = tf.reshape(tf.range(2 * 5), [2, 5])
    assert fast_loop.Chain(1, 3).rows(tensor, axis=1).numpy().tolist() == [[1, 2, 3], [6, 7, 8]]
    assert fast_loop.Chain(0, None).rows(tensor) is tensor
    assert fast_loop.Chain(0, 2).rows(None) is None


def test_a_projection_with_two_terms_of_one_source_is_refused():
    kernel = tf.ones([FEATURES, UNITS])
    spec = FastLoopSpec(
        (Projection(((INPUTS, kernel), (INPUTS, kernel)), None),), lambda pres, states: (pres[0], states)
    )
    with pytest.raises(ValueError, match="a projection has two inputs terms; sum their kernels"):
        fast_loop.FastLoop(spec, tf.TensorSpec([2, UNITS]))


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple"])
@pytest.mark.parametrize("caller", ["eager", "function"])
def test_without_the_input_gradient_the_other_gradients_stay(kind, caller):
    """`input_gradient=False` (an eager call whose inputs no tape watches): the states' and
    weights' gradients equal the generic loop's, and no gradient reaches the inputs."""
    cell = _cell(kind)
    inputs = tf.constant(random_array(1, 3, TIME, FEATURES))
    states = _states(cell, 3)
    cotangent = random_array(2, 3, TIME, UNITS)
    options = _options({"direction": "forwards", "zero_output_for_mask": False, "return_sequences": True}, 3, None)

    def run(loop, x, s):
        with tf.GradientTape() as tape:
            tape.watch(s)
            output, final_states = loop(x, s)
            loss = _loss(output, final_states, cotangent, "both")
        return tape.gradient(loss, [x] + s + list(cell.trainable_variables))

    fast = _fast(cell, dict(options, input_gradient=False))
    if caller == "eager":
        grads = run(lambda x, s: _traced("jit", fast, x, s), inputs, states)
    else:
        grads = _traced("function", lambda x, s: run(fast, x, s), inputs, states)
    expected = run(_generic(cell, options), inputs, states)
    assert grads[0] is None
    for index, (grad, ref) in enumerate(zip(grads[1:], expected[1:])):
        assert_close(grad, ref, 1e-5, f"gradient {index + 1}")


def test_the_native_loops_compiled_step_computes_bfloat16_in_float32_and_rounds_once():
    """`compiled_steps`' gate math on bfloat16 tensors equals the same maths in float32,
    rounded once at the end (XLA:CPU would otherwise round after every op)."""
    from tfrnn.lstm_cell import lstm_gates

    def gates(z, c):
        return lstm_gates(z, c, tf.tanh, tf.sigmoid)

    z = tf.cast(random_array(1, 8, 4 * 16) * 3, tf.bfloat16)
    c = tf.cast(random_array(2, 8, 16), tf.bfloat16)
    h, new_c = fast_loop._compiled_in_float32(gates, tf.bfloat16)(z, c)
    assert h.dtype == new_c.dtype == tf.bfloat16
    # XLA's and TensorFlow's float32 tanh may differ in the last bits, so a rare element may
    # round the other way; rounded after every op, a third to a half of them differ (measured).
    for got, want in zip((h, new_c), gates(tf.cast(z, tf.float32), tf.cast(c, tf.float32))):
        got = got.numpy().astype(np.float32)
        want = tf.cast(want, tf.bfloat16).numpy().astype(np.float32)
        assert np.mean(got == want) >= 0.95, np.mean(got == want)
        assert np.all(np.abs(got - want) <= np.abs(want) * 2.0**-7 + 1e-30)
    # float32 in, float32 out: the same function, compiled, nothing cast
    z32, c32 = tf.cast(z, tf.float32), tf.cast(c, tf.float32)
    for got, want in zip(fast_loop._compiled_in_float32(gates, tf.float32)(z32, c32), gates(z32, c32)):
        assert got.dtype == tf.float32
        assert_close(got, want, 1e-6, "float32")
