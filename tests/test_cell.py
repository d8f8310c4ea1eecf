"""The RNNCell base class: building, weights, initial states, users' own cells."""

import numpy as np
import pytest
import tensorflow as tf

import tfrnn
from conftest import assert_close, random_array


class MinimalCell(tfrnn.RNNCell):
    """The docstring's example: h' = tanh(x W + h)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units
        self.output_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", [input_shape[-1], self.units])

    def call(self, inputs, states, training=False):
        h = tf.tanh(inputs @ self.kernel + states[0])
        return h, [h]


def test_a_user_cell_runs_in_an_rnn():
    cell = MinimalCell(4, seed=1)
    inputs = random_array(1, 2, 3, 5)
    outputs = tfrnn.RNN(cell, return_sequences=True)(inputs)
    h = np.zeros([2, 4], np.float32)
    for t in range(3):
        h = np.tanh(inputs[:, t] @ cell.kernel.numpy() + h)
        assert_close(outputs[:, t], h, 1e-5)


def test_build_is_idempotent_and_records_the_features():
    cell = MinimalCell(4)
    cell.build([None, 5])
    kernel = cell.kernel
    cell.build([7, 5])
    assert cell.kernel is kernel and cell.built
    assert cell.input_shape.as_list() == [None, 5]
    assert [v.name for v in cell.weights] == ["minimal_cell/kernel:0"]


def test_variables_are_created_eagerly_inside_a_function():
    cell = MinimalCell(4)
    tf.function(lambda x: cell(x, [tf.zeros([2, 4])])[0])(tf.ones([2, 5]))
    assert cell.kernel.numpy().shape == (5, 4)


def test_other_features_after_build_are_an_error():
    cell = MinimalCell(4)
    cell.build([None, 5])
    with pytest.raises(
        ValueError,
        match=r"inputs has features of shape \[6\], but MinimalCell 'minimal_cell' was built for features of shape \[5\]",
    ):
        tfrnn.RNN(cell)(tf.ones([2, 3, 6]))


def test_set_weights_validates_before_assigning():
    cell = tfrnn.LSTMCell(3)
    cell.build([None, 2])
    before = cell.get_weights()
    with pytest.raises(ValueError, match=r"set_weights expects 3 arrays .* got 2"):
        cell.set_weights(before[:2])
    bad = [w.copy() + 1.0 for w in before]
    bad[2] = np.zeros([5])
    with pytest.raises(ValueError, match=r"bias:0 has shape \[12\], got an array of shape \[5\]"):
        cell.set_weights(bad)
    for a, b in zip(cell.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_default_initial_state_is_zeros_per_state():
    states = tfrnn.LSTMCell(3).get_initial_state(batch_size=2)
    assert [s.shape for s in states] == [[2, 3], [2, 3]]
    assert all(np.all(s.numpy() == 0.0) for s in states)


def test_a_cell_without_call_fails_clearly():
    class NoCall(tfrnn.RNNCell):
        state_size = 3

    with pytest.raises(TypeError, match="NoCall must implement call"):
        NoCall()(tf.ones([2, 4]), [tf.zeros([2, 3])])


def test_build_needs_known_features():
    with pytest.raises(ValueError, match="needs a known feature size to build"):
        MinimalCell(4).build([2, None])
    with pytest.raises(ValueError, match=r"inputs must be \[batch, features...\]"):
        MinimalCell(4).build([5])
