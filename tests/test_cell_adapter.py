"""CellAdapter: every kind of cell the RNN accepts, and the errors for what it does not."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfrnn
from conftest import assert_close, random_array, random_mask
from keras_twins import BuildTimeSizesCell, NestedCell, StatelessCell
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


# -- cells tf-keras accepts that are not one tensor in, one tensor out -------------------------

NestedInput = collections.namedtuple("NestedInput", ["t1", "t2"])
NestedState = collections.namedtuple("NestedState", ["s1", "s2"])


def _results_and_gradients(layer, inputs, **call):
    flat = [tf.convert_to_tensor(x) for x in tf.nest.flatten(inputs)]
    with tf.GradientTape() as tape:
        tape.watch(flat)
        result = layer(tf.nest.pack_sequence_as(inputs, flat), **call)
        loss = sum(tf.reduce_sum(r * r) for r in tf.nest.flatten(result))
    return tf.nest.flatten(result), tape.gradient(loss, flat)


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("structure", ["tuple", "namedtuple"])
def test_nested_inputs_states_and_outputs_match_tf_keras(structure, return_sequences):
    cell = NestedCell(3, 2, 2, state_type=NestedState if structure == "namedtuple" else None)
    x1, x2 = random_array(1, 2, 4, 5), random_array(2, 2, 4, 3, 2)
    inputs = NestedInput(x1, x2) if structure == "namedtuple" else (x1, x2)
    options = dict(return_sequences=return_sequences, return_state=True)
    expected, expected_grads = _results_and_gradients(tf_keras.layers.RNN(cell, **options), inputs)
    ours, grads = _results_and_gradients(tfrnn.RNN(cell, **options), inputs)
    assert [o.shape for o in ours] == [e.shape for e in expected]
    for index, (actual, wanted) in enumerate(zip(ours + grads, expected + expected_grads)):
        assert_close(actual, wanted, 1e-5, f"result {index}")


def test_nested_initial_states_and_masks_work_with_nested_inputs():
    cell = NestedCell(3, 2, 2)
    inputs = (tf.constant(random_array(3, 2, 4, 5)), tf.constant(random_array(4, 2, 4, 3, 2)))
    states = [tf.constant(random_array(5, 2, 3)), tf.constant(random_array(6, 2, 2, 2))]
    mask = random_mask(7, 2, 4)
    expected = tf_keras.layers.RNN(cell, return_sequences=True)(inputs, initial_state=states, mask=mask)
    ours = tfrnn.RNN(cell, return_sequences=True, jit_compile=False)(inputs, initial_state=states, mask=mask)
    for actual, wanted in zip(tf.nest.flatten(ours), tf.nest.flatten(expected)):
        assert_close(actual, wanted, 1e-5)


def test_a_cell_that_sets_its_sizes_in_build_matches_tf_keras():
    inputs = random_array(8, 2, 3, 4)
    expected = tf_keras.layers.RNN(BuildTimeSizesCell(5), return_state=True)(inputs)
    ours = tfrnn.RNN(BuildTimeSizesCell(5), return_state=True)(inputs)
    for actual, wanted in zip(ours, expected):
        assert_close(actual, wanted, 0.0)


def test_a_stateless_cell_matches_tf_keras():
    inputs = tf.constant(random_array(9, 2, 3, 4))
    empty = tf.nest.map_structure(lambda _: None, ((), [], ()))
    expected = tf_keras.layers.RNN(StatelessCell(), return_sequences=True)(inputs, initial_state=empty)
    rnn = tfrnn.RNN(StatelessCell(), return_sequences=True, return_state=True)
    result = rnn(inputs, initial_state=empty)
    assert len(result) == 1 and rnn.state_shapes == []
    assert_close(result[0], expected, 0.0)
    assert_close(tfrnn.RNN(StatelessCell())(inputs), inputs[:, -1] * 2.0, 0.0, "no initial_state")


def _keras_stack(kind):
    cells = [tf_keras.layers.LSTMCell(3), tf_keras.layers.GRUCell(2)]
    if kind == "reversed":
        # tf-keras' own RNN breaks reverse_state_order for cells of different state sizes.
        return tf_keras.layers.StackedRNNCells(
            [tf_keras.layers.GRUCell(3), tf_keras.layers.GRUCell(3)], reverse_state_order=True
        )
    if kind == "subclass":

        class Residual(tf_keras.layers.StackedRNNCells):
            """A subclass whose call adds the first cell's output to the second's."""

            def call(self, inputs, states, training=None):
                h1, states1 = self.cells[0](inputs, states[0])
                h2, states2 = self.cells[1](h1, states[1])
                return h2 + h1[:, :2], [states1, states2]

        return Residual(cells)
    return tf_keras.layers.StackedRNNCells(cells)


@pytest.mark.parametrize("kind", ["plain", "reversed", "subclass"])
def test_another_librarys_stacked_cells_run_as_they_are(kind):
    """A tf-keras StackedRNNCells (or subclass) keeps its call and its state order."""
    stack = _keras_stack(kind)
    inputs = random_array(10, 2, 4, 3)
    expected = tf_keras.layers.RNN(stack, return_state=True)(inputs)
    rnn = tfrnn.RNN(stack, return_state=True)
    ours = rnn(inputs)
    assert rnn.cell is stack
    flat_expected = tf.nest.flatten(expected)
    assert [s.shape for s in ours[1:]] == [s.shape for s in flat_expected[1:]]
    for actual, wanted in zip(ours, flat_expected):
        assert_close(actual, wanted, 1e-5)
    nested = [list(s) if isinstance(s, (list, tuple)) else s for s in expected[1:]]
    again = tfrnn.RNN(stack)(inputs, initial_state=nested)
    assert_close(again, tf_keras.layers.RNN(stack)(inputs, initial_state=expected[1:]), 1e-5, "nested initial_state")


def test_a_keras_3_stack_runs_as_it_is():
    import keras

    stack = keras.layers.StackedRNNCells([keras.layers.LSTMCell(3), keras.layers.GRUCell(2)])
    inputs = random_array(11, 2, 4, 3)
    expected = tf.nest.flatten(keras.layers.RNN(stack, return_state=True)(inputs))
    ours = tfrnn.RNN(stack, return_state=True)(inputs)
    assert len(ours) == len(expected) == 4
    for actual, wanted in zip(ours, expected):
        assert_close(actual, np.asarray(wanted), 1e-5)


def test_stacked_state_size_is_the_tuple_of_the_cells():
    cells = [tfrnn.LSTMCell(8), tfrnn.GRUCell(16)]
    assert tfrnn.StackedRNNCells(cells).state_size == tuple(c.state_size for c in cells) == ([8, 8], 16)
    keras_cells = [tf_keras.layers.LSTMCell(8), tf_keras.layers.GRUCell(16)]
    assert tfrnn.StackedRNNCells(cells).state_size == tf_keras.layers.StackedRNNCells(keras_cells).state_size


class StateSizeInBuild(tf_keras.layers.Layer):
    """Names its states at once but learns their size only in build() (as the adapters' ConvLSTM cells)."""

    def __init__(self):
        super().__init__()
        self.state_names, self.state_size = ["total"], None

    def build(self, input_shape):
        self.state_size = [int(input_shape[-1])]
        self.built = True

    def call(self, inputs, states):
        total = states[0] + inputs
        return total, [total]


def test_a_stateful_rnn_over_a_cell_sized_in_build_names_its_states_before_building():
    rnn = tfrnn.RNN(StateSizeInBuild(), stateful=True, jit_compile=False)
    inputs = random_array(3, 2, 4, 3)
    rnn(inputs)
    assert_close(rnn(inputs), 2 * inputs.sum(axis=1), 1e-5)
    assert [v.name for v in rnn.states] == ["states/total:0"]
