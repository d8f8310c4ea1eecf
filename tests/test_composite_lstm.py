"""The composite LSTM function against the NumPy gate equations, and its two traps."""

import numpy as np
import pytest
import tensorflow as tf

import tfrnn
from tfrnn._deploy import composite_lstm
from conftest import assert_close, random_array
from numpy_cells import lstm_step

BATCH, TIME, FEATURES, UNITS = 2, 5, 3, 4


def numpy_lstm(inputs, h, c, kernel, recurrent_kernel, bias):
    outputs, max_c = [], 0.0
    for t in range(inputs.shape[1]):
        h, c = lstm_step(inputs[:, t], h, c, kernel, recurrent_kernel, bias)
        outputs.append(h)
        max_c = max(max_c, float(np.max(np.abs(c))))
    return np.stack(outputs, 1), h, c, max_c


@pytest.mark.parametrize("time_static", [True, False])
def test_lstm_sequence_matches_the_gate_equations(time_static):
    inputs = random_array(0, BATCH, TIME, FEATURES)
    h0, c0 = random_array(1, BATCH, UNITS), random_array(2, BATCH, UNITS)
    weights = [random_array(3, FEATURES, 4 * UNITS), random_array(4, UNITS, 4 * UNITS), random_array(5, 4 * UNITS)]
    spec = tf.TensorSpec([BATCH, TIME if time_static else None, FEATURES])
    run = tf.function(
        lambda x: composite_lstm.lstm_sequence(x, h0, c0, *weights, track_max_c=True),
        input_signature=[spec],
    )
    last, outputs, h, c, max_c = run(inputs)
    expected_outputs, expected_h, expected_c, expected_max_c = numpy_lstm(inputs, h0, c0, *weights)
    assert_close(outputs, expected_outputs, 1e-5, "outputs")
    assert_close(last, expected_h, 1e-5, "last output")
    assert_close(h, expected_h, 1e-5, "h")
    assert_close(c, expected_c, 1e-5, "c")
    assert abs(float(max_c) - expected_max_c) < 1e-5


def test_zero_states_are_exact_zeros_that_depend_on_the_inputs():
    inputs = tf.constant([[[np.inf, -np.inf, 3.0]], [[1e30, -2.0, 0.0]]], tf.float32)
    h, c = composite_lstm.zero_states(inputs, UNITS)
    assert h.shape == c.shape == (2, UNITS)
    assert np.all(h.numpy() == 0.0) and np.all(c.numpy() == 0.0)
    graph = tf.function(lambda x: composite_lstm.zero_states(x, UNITS)).get_concrete_function(
        tf.TensorSpec([2, None, 3])
    ).graph
    # Not constants: the converter would make a constant initial state a variable tensor.
    assert any(op.type == "Tanh" for op in graph.get_operations())


@pytest.mark.parametrize(
    "cell, expected",
    [
        (tfrnn.LSTMCell(2), True),
        (tfrnn.LSTMCell(2, activation="relu"), False),
        (tfrnn.LSTMCell(2, recurrent_activation="hard_sigmoid"), False),
        (tfrnn.LSTMCell(2, dtype=tf.float64), False),
        (tfrnn.GRUCell(2), False),
        (tfrnn.LSTMCell(2, projection_units=1), False),
        (tfrnn.ConvLSTM2DCell(2, 1), False),
    ],
)
def test_only_plain_float32_lstms_are_eligible(cell, expected):
    assert composite_lstm.eligible(cell) is expected


def test_the_composite_function_carries_the_converters_attributes():
    function = composite_lstm.composite_function()
    concrete = function.get_concrete_function(
        tf.TensorSpec([1, None, FEATURES]), tf.TensorSpec([1, UNITS]), tf.TensorSpec([1, UNITS]),
        tf.TensorSpec([FEATURES, 4 * UNITS]), tf.TensorSpec([UNITS, 4 * UNITS]), tf.TensorSpec([4 * UNITS]),
    )
    attributes = concrete.function_def.attr
    assert attributes["api_implements"].s.decode().startswith("lstm_")
    assert attributes["time_major"].b is False and attributes["go_backwards"].b is False
    assert len(concrete.structured_outputs) == 5
    other = composite_lstm.composite_function().get_concrete_function(*concrete.structured_input_signature[0])
    assert other.function_def.attr["api_implements"].s != attributes["api_implements"].s
