"""CellAdapter: every kind of cell the RNN accepts, and the errors for what it does not."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfrnn
from conftest import assert_close, random_array
from tfrnn._core.cell_adapter import CellAdapter


class CallOnly:
    """Not a module and not callable: just `call` and `state_size`."""

    state_size = [3, 3]
    output_size = 3

    def __init__(self):
        self.kernel = tf.Variable(random_array(1, 2, 3))

    def call(self, inputs, states):
        h = tf.tanh(inputs @ self.kernel + states[0])
        return h, [h, states[1] + h]


def test_a_plain_object_with_call():
    inputs = random_array(2, 2, 4, 2)
    output, h, total = tfrnn.RNN(CallOnly(), return_state=True)(inputs)
    expected_h = np.zeros([2, 3], np.float32)
    expected_total = np.zeros([2, 3], np.float32)
    kernel = CallOnly().kernel.numpy()
    for t in range(4):
        expected_h = np.tanh(inputs[:, t] @ kernel + expected_h)
        expected_total += expected_h
    assert_close(h, expected_h, 1e-5)
    assert_close(total, expected_total, 1e-5)


class WithInitialState(tf.Module):
    state_size = 2

    def get_initial_state(self, batch_size=None, dtype=None):
        return [tf.fill([batch_size, 2], tf.constant(3.0, dtype))]

    def __call__(self, inputs, states):
        return states[0] + tf.reduce_sum(inputs, -1, keepdims=True), [states[0] + 1.0]


def test_the_cells_get_initial_state_is_used():
    output, state = tfrnn.RNN(WithInitialState(), return_state=True)(tf.ones([2, 3, 4]))
    np.testing.assert_array_equal(state.numpy(), 6.0)
    np.testing.assert_array_equal(output.numpy(), 9.0)


class WrongInitialState(WithInitialState):
    def get_initial_state(self, batch_size=None, dtype=None):
        return [tf.zeros([batch_size, 2]), tf.zeros([batch_size, 2])]


def test_a_get_initial_state_that_disagrees_with_state_size():
    with pytest.raises(ValueError, match=r"cell.get_initial_state returned 2 tensors of shape .* but its state_size gives 1 states"):
        tfrnn.RNN(WrongInitialState())(tf.ones([2, 3, 4]))


@pytest.mark.parametrize(
    "cell, message",
    [
        (object(), "cell must have a call\\(inputs, states\\) method or be callable, got object which has neither"),
        (type("NoStateSize", (), {"call": lambda self, x, s: (x, s)})(), "cell must define state_size .* got NoStateSize which has none"),
        (type("BadStateSize", (), {"call": lambda self, x, s: (x, s), "state_size": "big"})(), "cell.state_size entries must be an int"),
    ],
    ids=["no-call", "no-state-size", "bad-state-size"],
)
def test_cells_the_rnn_cannot_use(cell, message):
    with pytest.raises(TypeError, match=message):
        tfrnn.RNN(cell)


def test_what_the_adapter_reads_from_a_keras_cell():
    adapter = CellAdapter(tf_keras.layers.LSTMCell(4))
    assert adapter.flat_state_shapes == [tf.TensorShape([4]), tf.TensorShape([4])]
    assert adapter.accepts_training and not adapter.accepts_constants
    assert adapter.output_shape == tf.TensorShape([4])


@pytest.mark.parametrize("keras_module", ["tf_keras", "keras"])
def test_keras_cell_dropout_is_per_sequence_and_seeded(keras_module):
    """Keras cells' own masks are replaced by seeded ones: fixed over time, same under XLA."""
    keras = __import__(keras_module)
    outputs = []
    for jit_compile in (True, False):
        cell = keras.layers.SimpleRNNCell(
            6, dropout=0.5, activation="linear", use_bias=False, kernel_initializer="identity",
            recurrent_initializer="zeros",
        )
        rnn = tfrnn.RNN(cell, return_sequences=True, jit_compile=jit_compile)
        rnn.build([8, 5, 6])
        rnn._seeds.base = 11  # the same seed stream for both runs
        with tf.GradientTape() as tape:
            result = rnn(tf.ones([8, 5, 6]), training=True)
            loss = tf.reduce_sum(result * random_array(3, 8, 5, 6))
        grads = tape.gradient(loss, rnn.trainable_variables)
        outputs.append([result] + list(grads))
        values = result.numpy()
        for t in range(1, 5):
            np.testing.assert_array_equal(values[:, t], values[:, 0])
        assert set(np.unique(values)) == {0.0, 2.0}
    for a, b in zip(*outputs):
        assert_close(a, b, 1e-6)
