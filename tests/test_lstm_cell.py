"""LSTMCell against the NumPy gate equations (gate order i, f, c, o)."""

import numpy as np
import pytest
import tensorflow as tf

import tfrnn
from cell_cases import EXECUTIONS, run_rnn
from conftest import CALLERS, assert_close, random_array
from matrix import all_pairs, case_id
from numpy_cells import lstm_step, run_sequence

BATCH, TIME, FEATURES, UNITS = 2, 4, 3, 5

MATRIX = all_pairs(
    {
        "activation": ("tanh", "relu"),
        "recurrent_activation": ("sigmoid", "hard_sigmoid"),
        "use_bias": (True, False),
        "execution": EXECUTIONS,
        "caller": CALLERS,
    }
)


def _randomized(cell):
    """Non-trivial weights (the default bias is mostly zeros)."""
    for index, variable in enumerate(cell.weights):
        variable.assign(random_array(20 + index, *variable.shape) * 0.5)
    return cell


@pytest.mark.parametrize("case", MATRIX, ids=case_id)
def test_sequence_matches_numpy(case):
    cell = tfrnn.LSTMCell(
        UNITS,
        activation=case["activation"],
        recurrent_activation=case["recurrent_activation"],
        use_bias=case["use_bias"],
    )
    cell.build([None, FEATURES])
    _randomized(cell)
    inputs = random_array(1, BATCH, TIME, FEATURES)
    h0, c0 = random_array(2, BATCH, UNITS), random_array(3, BATCH, UNITS)
    weights = [v.numpy() for v in cell.weights] + ([] if case["use_bias"] else [None])
    expected_outputs, (h, c) = run_sequence(
        lambda x, h, c: lstm_step(
            x, h, c, *weights, case["activation"], case["recurrent_activation"]
        ),
        inputs,
        (h0, c0),
    )
    outputs, states = run_rnn(cell, inputs, [h0, c0], case["execution"], case["caller"])
    assert_close(outputs, expected_outputs, 1e-5, "outputs")
    assert_close(states[0], h, 1e-5, "h")
    assert_close(states[1], c, 1e-5, "c")


def test_single_step_call():
    cell = _randomized_built()
    x, h, c = random_array(4, BATCH, FEATURES), random_array(5, BATCH, UNITS), random_array(6, BATCH, UNITS)
    output, (new_h, new_c) = cell(x, [h, c])
    expected_h, expected_c = lstm_step(x, h, c, *[v.numpy() for v in cell.weights])
    assert_close(output, expected_h, 1e-5)
    assert_close(new_h, expected_h, 1e-5)
    assert_close(new_c, expected_c, 1e-5)


def _randomized_built():
    cell = tfrnn.LSTMCell(UNITS)
    cell.build([None, FEATURES])
    return _randomized(cell)


def test_weight_layout_and_unit_forget_bias():
    cell = tfrnn.LSTMCell(UNITS, seed=3)
    cell.build([None, FEATURES])
    assert cell.kernel.shape == [FEATURES, 4 * UNITS]
    assert cell.recurrent_kernel.shape == [UNITS, 4 * UNITS]
    bias = cell.bias.numpy()
    np.testing.assert_array_equal(bias[UNITS : 2 * UNITS], 1.0)
    np.testing.assert_array_equal(np.delete(bias, np.s_[UNITS : 2 * UNITS]), 0.0)
    assert cell.state_size == [UNITS, UNITS] and cell.output_size == UNITS
    without = tfrnn.LSTMCell(UNITS, unit_forget_bias=False)
    without.build([None, FEATURES])
    np.testing.assert_array_equal(without.bias.numpy(), 0.0)


def test_orthogonal_recurrent_kernel_blocks():
    cell = tfrnn.LSTMCell(UNITS, seed=4)
    cell.build([None, FEATURES])
    u = cell.recurrent_kernel.numpy()
    # Keras' orthogonal initializer on [units, 4 units]: orthonormal rows.
    assert_close(u @ u.T, np.eye(UNITS), 1e-5)


def test_seed_makes_weights_reproducible():
    a, b = tfrnn.LSTMCell(UNITS, seed=7), tfrnn.LSTMCell(UNITS, seed=7)
    a.build([None, FEATURES])
    b.build([None, FEATURES])
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(units=0), ValueError, "units must be a positive int, got 0"),
        (dict(units=4, activation="nope"), ValueError, "activation must be one of"),
        (dict(units=4, kernel_initializer="nope"), ValueError, "kernel_initializer must be one of"),
        (dict(units=4, dropout=1.0), ValueError, r"dropout must be in \[0, 1\), got 1.0"),
        (dict(units=4, recurrent_dropout="0.1"), TypeError, "recurrent_dropout must be a float"),
        (dict(units=4, dtype=tf.int32), TypeError, "dtype must be a floating dtype, got int32"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        tfrnn.LSTMCell(**kwargs)
