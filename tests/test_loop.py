"""rnn_loop against a plain Python loop that spells out Keras' masking rules."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from conftest import CALLERS, assert_close, call_in, random_array, random_mask
from matrix import all_pairs, case_id
from tfrnn import rnn_loop

BATCH, TIME, FEATURES, UNITS = 3, 5, 2, 4
KERNEL = random_array(1, FEATURES, UNITS)
RECURRENT = random_array(2, UNITS, UNITS) * 0.4


def _step(x_t, states):
    """Two states: h, and a counter of the steps that were not masked."""
    h, count = states
    new_h = tf.tanh(x_t @ KERNEL + h @ RECURRENT)
    return new_h * 2.0, [new_h, count + 1.0]


def _numpy_reference(inputs, mask, go_backwards, zero_output_for_mask):
    """Keras' rules, step by step: carry states and the previous output over masked steps."""
    h = np.zeros([BATCH, UNITS], np.float32)
    count = np.zeros([BATCH, 1], np.float32)
    previous = np.zeros([BATCH, UNITS], np.float32)
    sequence = []
    steps = range(TIME - 1, -1, -1) if go_backwards else range(TIME)
    for t in steps:
        new_h = np.tanh(inputs[:, t] @ KERNEL + h @ RECURRENT)
        output = new_h * 2.0
        keep = np.ones([BATCH, 1], bool) if mask is None else mask[:, t : t + 1]
        h = np.where(keep, new_h, h)
        count = np.where(keep, count + 1.0, count)
        previous = np.where(keep, output, previous)
        sequence.append(np.where(keep, output, 0.0) if zero_output_for_mask else previous)
    return previous, np.stack(sequence, 1), [h, count]


def _mask(kind):
    if kind == "none":
        return None
    if kind == "all-masked":
        return np.zeros([BATCH, TIME], bool)
    return random_mask(3, BATCH, TIME)


SEMANTICS = {
    "go_backwards": (False, True),
    "mask": ("none", "random", "all-masked"),
    "zero_output_for_mask": (False, True),
    "return_sequences": (False, True),
    "unroll": (False, True),
}
FULL = [dict(zip(SEMANTICS, values)) for values in itertools.product(*SEMANTICS.values())]
COMPILED = all_pairs({**SEMANTICS, "caller": ("function", "jit")})


def _check(case, caller):
    inputs = random_array(4, BATCH, TIME, FEATURES)
    mask = _mask(case["mask"])
    options = {k: case[k] for k in ("go_backwards", "zero_output_for_mask", "return_sequences", "unroll")}

    def run(inputs):
        result = rnn_loop(
            _step,
            inputs,
            [tf.zeros([BATCH, UNITS]), tf.zeros([BATCH, 1])],
            output_spec=tf.TensorSpec([BATCH, UNITS], tf.float32),
            mask=None if mask is None else tf.constant(mask),
            **options,
        )
        outputs = result.outputs if case["return_sequences"] else tf.zeros([0])
        return result.last_output, outputs, result.final_states

    last, outputs, states = call_in(caller, run, tf.constant(inputs))
    expected_last, expected_sequence, expected_states = _numpy_reference(
        inputs, mask, case["go_backwards"], case["zero_output_for_mask"]
    )
    assert_close(last, expected_last, 1e-5, "last output")
    if case["return_sequences"]:
        assert_close(outputs, expected_sequence, 1e-5, "sequence")
    for a, b in zip(states, expected_states):
        assert_close(a, b, 1e-5, "state")


@pytest.mark.parametrize("case", FULL, ids=case_id)
def test_every_option_combination_eagerly(case):
    _check(case, "eager")


@pytest.mark.parametrize("case", COMPILED, ids=case_id)
def test_compiled(case):
    _check(case, case["caller"])


@pytest.mark.parametrize("caller", CALLERS)
def test_zero_timesteps_return_the_initial_state(caller):
    def run(inputs):
        result = rnn_loop(
            _step,
            inputs,
            [tf.ones([BATCH, UNITS]), tf.zeros([BATCH, 1])],
            output_spec=tf.TensorSpec([BATCH, UNITS], tf.float32),
            return_sequences=True,
        )
        return result.last_output, result.outputs, result.final_states

    last, outputs, states = call_in(caller, run, tf.zeros([BATCH, 0, FEATURES]))
    assert outputs.shape == [BATCH, 0, UNITS]
    np.testing.assert_array_equal(last.numpy(), 0.0)
    np.testing.assert_array_equal(states[0].numpy(), 1.0)


def test_creates_no_variables():
    created = []

    def creator(next_creator, **kwargs):
        created.append(kwargs.get("name"))
        return next_creator(**kwargs)

    with tf.variable_creator_scope(creator):
        tf.function(
            lambda x: rnn_loop(
                _step,
                x,
                [tf.zeros([BATCH, UNITS]), tf.zeros([BATCH, 1])],
                output_spec=tf.TensorSpec([BATCH, UNITS], tf.float32),
            ).last_output,
            jit_compile=True,
        )(tf.zeros([BATCH, TIME, FEATURES]))
    assert created == []


def _bad_step_output(x_t, states):
    return tf.zeros([BATCH, UNITS + 1]), states


def _bad_step_count(x_t, states):
    return tf.zeros([BATCH, UNITS]), states[:1]


def _bad_step_dtype(x_t, states):
    return tf.zeros([BATCH, UNITS]), [tf.cast(states[0], tf.float64), states[1]]


@pytest.mark.parametrize(
    "step, message",
    [
        (_bad_step_output, r"the cell's output has shape \(3, 5\) and dtype float32, but its output_size says \(3, 4\)"),
        (_bad_step_count, "the cell returned 1 new states for 2 states"),
        (_bad_step_dtype, "the cell's new state 0 has shape .* and dtype float64, but the state has shape .* and dtype float32"),
    ],
    ids=["output", "count", "dtype"],
)
@pytest.mark.parametrize("unroll", [False, True])
def test_a_step_that_breaks_its_contract(step, message, unroll):
    with pytest.raises(ValueError, match=message):
        rnn_loop(
            step,
            tf.zeros([BATCH, TIME, FEATURES]),
            [tf.zeros([BATCH, UNITS]), tf.zeros([BATCH, 1])],
            output_spec=tf.TensorSpec([BATCH, UNITS], tf.float32),
            unroll=unroll,
        )


def test_unroll_needs_static_timesteps():
    fn = tf.function(
        lambda x: rnn_loop(
            _step,
            x,
            [tf.zeros([BATCH, UNITS]), tf.zeros([BATCH, 1])],
            output_spec=tf.TensorSpec([BATCH, UNITS], tf.float32),
            unroll=True,
        ).last_output
    )
    with pytest.raises(ValueError, match="unroll=True needs a static number of timesteps"):
        fn.get_concrete_function(tf.TensorSpec([BATCH, None, FEATURES]))
