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


class BuildTimeSizesCell(tf_keras.layers.Layer):
    """Adds one to its inputs and state; it learns its output_size only in build()."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.state_size = units

    def build(self, input_shape):
        self.output_size = input_shape[-1]
        self.built = True

    def call(self, inputs, states):
        return inputs + 1.0, [states[0] + 1.0]


class StatelessCell(tf_keras.layers.Layer):
    """No states at all (`state_size = ((), [], ())`); outputs its inputs doubled."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.state_size = ((), [], ())
        self.output_size = None

    def build(self, input_shape):
        self.output_size = input_shape[-1]
        self.built = True

    def call(self, inputs, states):
        return inputs * 2.0, states


class NestedCell(tf_keras.layers.Layer):
    """Nested inputs `(x1 [b, i1], x2 [b, i2, i3])`, states (a namedtuple if `state_type`)
    `(s1 [b, u1], s2 [b, u2, u3])` and outputs `(o1, o2)`, as in the Keras RNN guide."""

    def __init__(self, u1, u2, u3, state_type=None, **kwargs):
        super().__init__(**kwargs)
        self.units = (u1, u2, u3)
        self.state_type = state_type
        sizes = (u1, tf.TensorShape([u2, u3]))
        self.state_size = state_type(*sizes) if state_type else sizes
        self.output_size = sizes

    def build(self, input_shape):
        first, second = input_shape[0], input_shape[1]
        u1, u2, u3 = self.units
        self.kernel_1 = self.add_weight(shape=(first[-1], u1), initializer="uniform", name="kernel_1")
        self.kernel_2 = self.add_weight(shape=(second[-2], second[-1], u2, u3), initializer="uniform", name="kernel_2")
        self.built = True

    def call(self, inputs, states):
        x1, x2 = tf.nest.flatten(inputs)
        s1, s2 = states
        o1 = tf.tanh(x1 @ self.kernel_1 + s1)
        o2 = tf.tanh(tf.einsum("bij,ijkl->bkl", x2, self.kernel_2) + s2)
        new_states = self.state_type(o1, o2) if self.state_type else [o1, o2]
        return [o1, o2], new_states
