"""tfrnn.tf_keras.cell_layer: `layer.cell` is the tf-keras layer tf-keras code reads, checked
against the tf-keras namesake's cell (trainability, weights, losses, sizes, a step)."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfrnn
from conftest import assert_close, random_array
from tfrnn.tf_keras import cell_layer

FEATURES, UNITS = 4, 3
NAMESAKES = ("SimpleRNN", "GRU", "LSTM")


def twins(name, **options):
    ours, theirs = getattr(tfrnn.tf_keras, name)(UNITS, **options), getattr(tf_keras.layers, name)(UNITS, **options)
    for layer in (theirs, ours):
        layer.build((None, None, FEATURES))
    ours.set_weights(theirs.get_weights())
    return ours, theirs


def counts(layer):
    return len(layer.trainable_weights), len(layer.non_trainable_weights), layer.cell.trainable


@pytest.mark.parametrize("name", NAMESAKES)
def test_trainability_follows_tf_keras(name):
    ours, theirs = twins(name, trainable=False)
    assert isinstance(ours.cell, tf_keras.layers.Layer)
    steps = [lambda l: None, lambda l: setattr(l, "trainable", True), lambda l: setattr(l.cell, "trainable", False)]
    for step in steps:
        step(ours)
        step(theirs)
        assert counts(ours) == counts(theirs)


@pytest.mark.parametrize("name", NAMESAKES)
def test_the_cell_holds_the_layers_weights_under_tf_keras_names(name):
    ours, theirs = twins(name)
    assert [v.name for v in ours.cell.weights] == [v.name for v in theirs.cell.weights]
    for attribute in ("kernel", "recurrent_kernel", "bias"):
        assert getattr(ours.cell, attribute) is getattr(ours.cell.wrapped, attribute)
    assert ours.cell.units == theirs.cell.units == UNITS
    assert ours.cell.state_size == theirs.cell.state_size
    assert ours.cell.output_size == theirs.cell.output_size


def test_a_stacks_cell_has_tf_keras_sizes_and_its_cells_layers():
    tf_keras.backend.clear_session()  # tf-keras' cell names without this process' counters
    cells = dict(ours=[tfrnn.LSTMCell(8), tfrnn.GRUCell(16)], theirs=[tf_keras.layers.LSTMCell(8), tf_keras.layers.GRUCell(16)])
    ours, theirs = tfrnn.tf_keras.RNN(cells["ours"], name="stack"), tf_keras.layers.RNN(cells["theirs"], name="stack")
    assert ours.cell.state_size == theirs.cell.state_size == ([8, 8], 16)
    assert isinstance(ours.cell.state_size, tuple)
    assert ours.cell.output_size == theirs.cell.output_size == 16
    assert [type(c).__name__ for c in ours.cell.cells] == ["LSTMCell", "GRUCell"]
    for layer in (ours, theirs):
        tf_keras.Sequential([tf_keras.Input((None, FEATURES)), layer])  # built in its name scope
    assert [c.kernel.name for c in ours.cell.cells] == [c.kernel.name for c in theirs.cell.cells]
    assert ours.cell.cells[0].kernel.name.endswith("/stacked_rnn_cells/lstm_cell/kernel:0")


@pytest.mark.parametrize("name", NAMESAKES)
def test_regularization_losses_are_the_cells_as_in_tf_keras(name):
    options = dict(kernel_regularizer="l1", recurrent_regularizer="l2", bias_regularizer="l2", activity_regularizer="l1")
    ours, theirs = twins(name, **options)
    assert (len(ours.losses), len(ours.cell.losses)) == (len(theirs.losses), len(theirs.cell.losses)) == (3, 3)
    inputs = random_array(1, 2, 5, FEATURES)
    ours(inputs), theirs(inputs)
    assert len(ours.losses) == len(theirs.losses) == 4
    assert_close(tf.add_n(ours.losses), tf.add_n(theirs.losses), 1e-4)


@pytest.mark.parametrize("name", NAMESAKES + ("stacked",))
def test_a_step_and_the_initial_state_of_the_cell_match_tf_keras(name):
    if name == "stacked":
        ours = tfrnn.tf_keras.RNN([tfrnn.LSTMCell(UNITS), tfrnn.GRUCell(UNITS)])
        theirs = tf_keras.layers.RNN([tf_keras.layers.LSTMCell(UNITS), tf_keras.layers.GRUCell(UNITS)])
        for layer in (theirs, ours):
            layer.build((None, None, FEATURES))
        ours.set_weights(theirs.get_weights())
    else:
        ours, theirs = twins(name)
    initial = ours.cell.get_initial_state(batch_size=2, dtype=tf.float32)
    expected = theirs.cell.get_initial_state(batch_size=2, dtype=tf.float32)
    tf.nest.assert_same_structure(initial, expected)
    states = tf.nest.map_structure(lambda s: tf.constant(random_array(2, *s.shape)), expected)
    inputs = random_array(3, 2, FEATURES)
    result, reference = ours.cell(inputs, states), theirs.cell(inputs, states)
    for a, b in zip(tf.nest.flatten(result), tf.nest.flatten(reference), strict=True):
        assert_close(a, b, 1e-5, name)


def test_cells_of_other_kinds_get_a_view_with_their_attribute_names(tmp_path):
    """A user's tfrnn cell (and a Keras 3 cell) show their variables as they name them."""
    import keras

    class MinimalCell(tfrnn.RNNCell):
        def __init__(self, units):
            super().__init__()
            self.units = self.state_size = self.output_size = units

        def build(self, input_shape):
            self.w_in = self.add_weight("kernel", [input_shape[-1], self.units])

        def call(self, inputs, states, training=False):
            h = tf.tanh(inputs @ self.w_in + states[0])
            return h, [h]

    layer = tfrnn.tf_keras.RNN(MinimalCell(UNITS))
    layer(random_array(4, 2, 5, FEATURES))
    assert type(layer.cell) is cell_layer.CellLayer and layer.cell.w_in is layer.weights[0]
    checkpoint = tf.train.Checkpoint(layer=layer)
    keys = [k for k, _ in tf.train.list_variables(checkpoint.write(str(tmp_path / "ckpt")))]
    assert "layer/cell/w_in/.ATTRIBUTES/VARIABLE_VALUE" in keys
    keras3 = tfrnn.tf_keras.RNN(keras.layers.GRUCell(UNITS))
    keras3(random_array(5, 2, 5, FEATURES))
    assert [tuple(w.shape) for w in keras3.cell.trainable_weights] == [(FEATURES, 9), (UNITS, 9), (2, 9)]


def test_the_cells_config_rebuilds_the_same_cell():
    ours, _ = twins("GRU", reset_after=False)
    rebuilt = cell_layer.CellLayer.from_config(ours.cell.get_config())
    assert type(rebuilt) is type(ours.cell) and rebuilt.wrapped.get_config() == ours.cell.wrapped.get_config()
