"""tf-keras twins of tfrnn cells, holding the same weights: the reference implementation."""

import tensorflow as tf
import tf_keras

import tfrnn

CELL_KINDS = ("simple", "lstm", "gru", "gru_reset_before", "stacked")


def _pair(kind, units, index):
    if kind == "simple":
        return tfrnn.SimpleRNNCell(units, seed=index), tf_keras.layers.SimpleRNNCell(units)
    if kind == "lstm":
        return tfrnn.LSTMCell(units, seed=index), tf_keras.layers.LSTMCell(units)
    if kind == "gru":
        return tfrnn.GRUCell(units, seed=index), tf_keras.layers.GRUCell(units)
    if kind == "gru_reset_before":
        return (
            tfrnn.GRUCell(units, reset_after=False, seed=index),
            tf_keras.layers.GRUCell(units, reset_after=False),
        )
    raise ValueError(kind)


def twin_cells(kind, units, features, **options):
    """`(tfrnn cell, tf_keras cell)` with identical weights, built for `features` inputs.

    `stacked` is an LSTM under a GRU. `options` go to both cells (e.g. dropout).
    """
    if kind == "stacked":
        lower = twin_cells("lstm", units, features, **options)
        upper = twin_cells("gru", units + 1, units, **options)
        return [lower[0], upper[0]], [lower[1], upper[1]]
    ours, theirs = _pair(kind, units, 0)
    if options:
        cls = type(ours)
        ours = cls(units, seed=0, **options, **_extra(kind))
        theirs = type(theirs)(units, **options, **_extra(kind))
    theirs.build((None, features))
    ours.build((None, features))
    ours.set_weights(theirs.get_weights())
    return ours, theirs


def _extra(kind):
    return {"reset_after": False} if kind == "gru_reset_before" else {}


class MinimalRNNCell(tf_keras.layers.Layer):
    """The Keras docs' example cell (`MinimalRNNCell`), as a tf-keras layer."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units), initializer="uniform", name="kernel"
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units), initializer="uniform", name="recurrent_kernel"
        )
        self.built = True

    def call(self, inputs, states):
        output = tf.matmul(inputs, self.kernel) + tf.matmul(states[0], self.recurrent_kernel)
        return output, [output]


class CellWithConstants(tf_keras.layers.Layer):
    """A tf-keras cell whose step reads `constants` (as in tf-keras' own RNN tests)."""

    def __init__(self, units, constant_size, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units
        self.constant_size = constant_size

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units), name="recurrent_kernel")
        self.constant_kernel = self.add_weight(shape=(self.constant_size, self.units), name="constant_kernel")

    def call(self, inputs, states, constants):
        h = tf.tanh(inputs @ self.kernel + states[0] @ self.recurrent_kernel + constants[0] @ self.constant_kernel)
        return h, [h]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "constant_size": self.constant_size}
