"""Length buckets: a few compiled shapes, results identical to the unpadded run."""

import numpy as np
import pytest
import tensorflow as tf

import tfrnn
from conftest import random_array, random_mask
from matrix import all_pairs, case_id

BATCH, FEATURES, UNITS = 2, 3, 4


def test_default_buckets_are_powers_of_two_from_8():
    buckets = tfrnn.LengthBuckets()
    assert [buckets.bucket(n) for n in (1, 8, 9, 100, 500, 513)] == [8, 8, 16, 128, 512, 1024]
    assert len({buckets.bucket(n) for n in range(1, 501)}) == 7


MATRIX = all_pairs(
    {
        "cell": ("lstm", "gru", "stacked"),
        "go_backwards": (False, True),
        "return_sequences": (False, True),
        "mask": (False, True),
        "execution": ("jit-while", "jit-unroll", "while"),
    }
)


def _cell(kind):
    if kind == "lstm":
        return tfrnn.LSTMCell(UNITS, seed=1)
    if kind == "gru":
        return tfrnn.GRUCell(UNITS, seed=1)
    return [tfrnn.LSTMCell(UNITS, seed=1), tfrnn.GRUCell(UNITS, seed=2)]


@pytest.mark.parametrize("case", MATRIX, ids=case_id)
def test_padded_run_equals_unpadded_run(case):
    cell = _cell(case["cell"])
    options = dict(
        return_sequences=case["return_sequences"],
        return_state=True,
        go_backwards=case["go_backwards"],
        jit_compile=case["execution"].startswith("jit"),
        unroll=case["execution"].endswith("unroll"),
    )
    plain = tfrnn.RNN(cell, **options)
    bucketed = tfrnn.RNN(cell, length_buckets=[4, 8, 16], **options)
    for length in (3, 11):
        inputs = random_array(length, BATCH, length, FEATURES)
        mask = random_mask(length, BATCH, length) if case["mask"] else None
        expected = plain(inputs, mask=mask)
        results = bucketed(inputs, mask=mask)
        for a, b in zip(results, expected):
            assert a.shape == b.shape
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, rtol=0)


def test_one_function_with_unknown_length_pads_in_the_graph():
    rnn = tfrnn.RNN(tfrnn.GRUCell(UNITS, seed=3), return_sequences=True, length_buckets=True)
    plain = tfrnn.RNN(rnn.cell, return_sequences=True)
    serve = tf.function(rnn, input_signature=[tf.TensorSpec([BATCH, None, FEATURES])])
    for length in (2, 9, 17):
        inputs = random_array(length, BATCH, length, FEATURES)
        np.testing.assert_allclose(serve(inputs).numpy(), plain(inputs).numpy(), atol=1e-6)


def test_stateful_states_stop_at_the_last_real_step():
    cell = tfrnn.LSTMCell(UNITS, seed=4)
    bucketed = tfrnn.RNN(cell, stateful=True, length_buckets=True)
    plain = tfrnn.RNN(cell, stateful=True)
    for length in (3, 6):
        inputs = random_array(length, BATCH, length, FEATURES)
        bucketed(inputs)
        plain(inputs)
    for a, b in zip(bucketed.states, plain.states):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


@pytest.mark.parametrize(
    "value, error, message",
    [
        ([8, 4], ValueError, "length_buckets must be increasing positive lengths"),
        ("yes", TypeError, "length_buckets must be None, True, a list"),
    ],
)
def test_bad_buckets(value, error, message):
    with pytest.raises(error, match=message):
        tfrnn.RNN(tfrnn.GRUCell(UNITS), length_buckets=value)


def test_a_sequence_longer_than_every_bucket():
    rnn = tfrnn.RNN(tfrnn.GRUCell(UNITS), length_buckets=[4, 8])
    with pytest.raises(ValueError, match="inputs have 9 timesteps, more than the largest length bucket 8"):
        rnn(tf.zeros([BATCH, 9, FEATURES]))
