"""StackedRNNCells: mixed cells, flat and nested states, constants."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfrnn
from conftest import assert_close, random_array
from keras_twins import twin_cells


def test_a_stack_of_tfrnn_and_tf_keras_cells_matches_tf_keras():
    ours_lstm, keras_lstm = twin_cells("lstm", 4, 3)
    keras_gru = tf_keras.layers.GRUCell(5)
    inputs = random_array(1, 2, 6, 3)
    expected = tf.nest.flatten(
        tf_keras.layers.RNN([keras_lstm, keras_gru], return_state=True)(inputs)
    )
    results = tfrnn.RNN([ours_lstm, keras_gru], return_state=True)(inputs)
    assert len(results) == 4
    for a, b in zip(results, expected):
        assert_close(a, b, 1e-5)


def test_a_tf_keras_stack_is_taken_apart():
    ours, theirs = twin_cells("stacked", 4, 3)
    stack = tf_keras.layers.StackedRNNCells(theirs)
    inputs = random_array(2, 2, 5, 3)
    expected = tf_keras.layers.RNN(stack)(inputs)
    assert_close(tfrnn.RNN(stack)(inputs), expected, 1e-5)


def test_state_layout():
    stack = tfrnn.StackedRNNCells([tfrnn.LSTMCell(4), tfrnn.GRUCell(5), tfrnn.LSTMCell(6)])
    assert stack.state_groups() == [2, 1, 2]
    assert stack.state_names() == ["h0", "c0", "h1", "h2", "c2"]
    assert [s.as_list() for s in stack.flat_state_shapes()] == [[4], [4], [5], [6], [6]]
    assert stack.output_size == tf.TensorShape([6])
    nested = stack.get_initial_state(batch_size=2)
    assert [len(group) for group in nested] == [2, 1, 2]


def test_nested_initial_state_must_group_per_cell():
    rnn = tfrnn.RNN([tfrnn.LSTMCell(4), tfrnn.GRUCell(5)])
    h0, c0, h1 = np.zeros([2, 4]), np.zeros([2, 4]), np.zeros([2, 5])
    with pytest.raises(
        ValueError, match=r"initial_state nested per cell must have \[2, 1\] states per cell, got \[1, 2\]"
    ):
        rnn(tf.ones([2, 3, 3]), initial_state=[[h0], [c0, h1]])


class GatedByConstant(tf.Module):
    state_size = 3
    output_size = 3

    def call(self, inputs, states, constants):
        h = states[0] + inputs[:, :3] * constants[0]
        return h, [h]


def test_constants_go_to_the_cells_that_take_them():
    stack = [GatedByConstant(), tfrnn.SimpleRNNCell(2)]
    rnn = tfrnn.RNN(stack, return_state=True)
    inputs = random_array(3, 2, 4, 3)
    scale = random_array(4, 2, 3)
    results = rnn(inputs, constants=[scale])
    assert_close(results[1], inputs.sum(1) * scale, 1e-5)


def test_an_empty_stack():
    with pytest.raises(ValueError, match="cells must hold at least one cell"):
        tfrnn.StackedRNNCells([])


def test_stacked_dropout_draws_independent_masks_per_cell():
    stack = tfrnn.StackedRNNCells(
        [tfrnn.SimpleRNNCell(4, dropout=0.5), tfrnn.SimpleRNNCell(4, dropout=0.5)]
    )
    stack.build([None, 4])
    masks = stack.get_dropout_masks(16, training=True, seed=tf.constant([1, 2]))
    assert len(masks) == 2
    assert not np.array_equal(masks[0][0][0].numpy(), masks[1][0][0].numpy())
    assert stack.get_dropout_masks(16, training=False) is None
