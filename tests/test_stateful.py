"""Stateful RNNs: states in tf.Variables, carried across calls, reset, checkpointed."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfrnn
from conftest import CALLERS, assert_close, call_in, random_array, random_mask
from keras_twins import twin_cells

BATCH, TIME, FEATURES, UNITS = 2, 6, 3, 5
EXECUTIONS = ("jit-while", "jit-unroll", "while", "unroll")


def _stateful(cell, execution, **options):
    return tfrnn.RNN(
        cell,
        stateful=True,
        return_sequences=True,
        return_state=True,
        jit_compile=execution.startswith("jit"),
        unroll=execution.endswith("unroll"),
        **options,
    )


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("kind", ["lstm", "stacked"])
def test_chunks_equal_the_whole_sequence(kind, execution, caller):
    ours_cell, keras_cell = twin_cells(kind, UNITS, FEATURES)
    inputs = random_array(1, BATCH, TIME, FEATURES)
    mask = random_mask(2, BATCH, TIME)
    whole = tf.nest.flatten(
        tf_keras.layers.RNN(keras_cell, return_sequences=True, return_state=True)(
            inputs, mask=mask
        )
    )
    rnn = _stateful(ours_cell, execution)
    pieces = []
    for start, stop in [(0, 2), (2, 5), (5, 6)]:
        chunk, chunk_mask = tf.constant(inputs[:, start:stop]), tf.constant(mask[:, start:stop])
        results = call_in(caller, lambda x, m: rnn(x, mask=m), chunk, chunk_mask)
        pieces.append(results[0])
    assert_close(tf.concat(pieces, 1), whole[0], 1e-5, "outputs")
    for variable, expected in zip(rnn.states, whole[1:]):
        assert_close(variable, expected, 1e-5, variable.name)


def test_reset_state_restores_the_initial_state():
    cell = tfrnn.GRUCell(UNITS)
    rnn = _stateful(cell, "jit-while")
    inputs = random_array(3, BATCH, TIME, FEATURES)
    first = rnn(inputs)[0]
    second = rnn(inputs)[0]
    assert np.abs(first.numpy() - second.numpy()).max() > 1e-3
    rnn.reset_state()
    np.testing.assert_array_equal(rnn.states[0].numpy(), 0.0)
    assert_close(rnn(inputs)[0], first, 1e-6)


def test_reset_state_with_values_equals_that_initial_state():
    cell = tfrnn.LSTMCell(UNITS)
    rnn = _stateful(cell, "jit-while")
    stateless = tfrnn.RNN(cell, return_sequences=True, jit_compile=False)
    inputs = random_array(4, BATCH, TIME, FEATURES)
    values = [random_array(5, BATCH, UNITS), random_array(6, BATCH, UNITS)]
    rnn(inputs)
    rnn.reset_state(states=values)
    assert_close(rnn.states[1], values[1], 0.0)
    assert_close(rnn(inputs)[0], stateless(inputs, initial_state=values), 1e-5)


def test_reset_state_before_the_first_call_defines_the_batch():
    rnn = _stateful(tfrnn.SimpleRNNCell(UNITS), "while")
    values = [random_array(7, 4, UNITS)]
    rnn.reset_state(states=values)
    assert rnn.states[0].shape == [4, UNITS]
    outputs = rnn(random_array(8, 4, TIME, FEATURES))[0]
    expected = tfrnn.RNN(rnn.cell, return_sequences=True, jit_compile=False)(
        random_array(8, 4, TIME, FEATURES), initial_state=values
    )
    assert_close(outputs, expected, 1e-5)


def test_explicit_initial_state_wins_and_is_written_back():
    """tf#32299: tf-keras prefers the stored state when it is non-zero; tfrnn does not."""
    cell = tfrnn.GRUCell(UNITS)
    rnn = _stateful(cell, "jit-while")
    stateless = tfrnn.RNN(cell, return_sequences=True, return_state=True, jit_compile=False)
    inputs = random_array(9, BATCH, TIME, FEATURES)
    rnn(inputs)  # the stored state is now non-zero
    given = [random_array(10, BATCH, UNITS)]
    outputs, state = rnn(inputs, initial_state=given)
    expected_outputs, expected_state = stateless(inputs, initial_state=given)
    assert_close(outputs, expected_outputs, 1e-5)
    assert_close(rnn.states[0], expected_state, 1e-5)


def test_checkpoint_restores_states_and_weights(tmp_path):
    cell = tfrnn.LSTMCell(UNITS)
    rnn = _stateful(cell, "jit-while")
    inputs = random_array(11, BATCH, TIME, FEATURES)
    rnn(inputs)
    saved_states = [v.numpy() for v in rnn.states]
    saved_kernel = cell.kernel.numpy()
    path = tf.train.Checkpoint(rnn=rnn).save(str(tmp_path / "ckpt"))
    rnn(inputs)
    cell.kernel.assign(tf.zeros_like(cell.kernel))
    tf.train.Checkpoint(rnn=rnn).restore(path).assert_consumed()
    for variable, expected in zip(rnn.states, saved_states):
        np.testing.assert_array_equal(variable.numpy(), expected)
    np.testing.assert_array_equal(cell.kernel.numpy(), saved_kernel)


def test_checkpoint_restored_before_the_first_call_restores_the_states(tmp_path):
    """The restore waits for the variables: the weights at build, the states when created."""
    rnn = _stateful(tfrnn.LSTMCell(UNITS), "jit-while")
    rnn(random_array(18, BATCH, TIME, FEATURES))
    saved_states = [v.numpy() for v in rnn.states]
    path = tf.train.Checkpoint(rnn=rnn).save(str(tmp_path / "ckpt"))
    fresh = _stateful(tfrnn.LSTMCell(UNITS), "jit-while")
    status = tf.train.Checkpoint(rnn=fresh).restore(path)
    fresh.build([BATCH, TIME, FEATURES])
    status.assert_consumed()
    for variable, expected in zip(fresh.states, saved_states):
        np.testing.assert_array_equal(variable.numpy(), expected)
    np.testing.assert_array_equal(fresh.cell.kernel.numpy(), rnn.cell.kernel.numpy())


def test_state_variables_are_not_trainable():
    rnn = _stateful(tfrnn.LSTMCell(UNITS), "while")
    rnn(random_array(12, BATCH, TIME, FEATURES))
    assert len(rnn.states) == 2
    assert all(not v.trainable for v in rnn.states)
    trainable = {v.ref() for v in rnn.trainable_variables}
    assert not any(v.ref() in trainable for v in rnn.states)


@pytest.mark.parametrize("caller", ["function", "jit"])
def test_states_update_inside_the_callers_function(caller):
    rnn = _stateful(tfrnn.SimpleRNNCell(UNITS), "jit-while")
    inputs = tf.constant(random_array(13, BATCH, TIME, FEATURES))
    fn = tf.function(lambda x: rnn(x)[1], jit_compile=(caller == "jit"))
    first = fn(inputs)
    assert_close(rnn.states[0], first, 0.0)
    second = fn(inputs)
    assert np.abs(first.numpy() - second.numpy()).max() > 1e-3
    assert_close(rnn.states[0], second, 0.0)


# -- bad input: a clear error, and the states stay as they were ----------------------------


@pytest.fixture
def used_stateful_lstm():
    rnn = _stateful(tfrnn.LSTMCell(UNITS), "jit-while")
    rnn(random_array(14, BATCH, TIME, FEATURES))
    return rnn, [v.numpy() for v in rnn.states]


def _assert_unchanged(rnn, before):
    for variable, value in zip(rnn.states, before):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_unknown_batch_size_is_an_error():
    rnn = _stateful(tfrnn.LSTMCell(UNITS), "jit-while")
    fn = tf.function(rnn, input_signature=[tf.TensorSpec([None, TIME, FEATURES])])
    with pytest.raises(ValueError, match="stateful RNN needs a static batch size"):
        fn.get_concrete_function()


def test_changed_batch_size_is_an_error(used_stateful_lstm):
    rnn, before = used_stateful_lstm
    with pytest.raises(ValueError, match=r"holds states for batch size 2, got inputs with batch size 3"):
        rnn(random_array(15, 3, TIME, FEATURES))
    _assert_unchanged(rnn, before)


def test_bad_initial_state_leaves_states_alone(used_stateful_lstm):
    rnn, before = used_stateful_lstm
    with pytest.raises(
        ValueError,
        match=r"initial_state must have 2 tensors \(h, c\) of shape \[2, 5\], \[2, 5\], "
        r"got 1 tensor of shape \[2, 4\]",
    ):
        rnn(random_array(16, BATCH, TIME, FEATURES), initial_state=[random_array(17, BATCH, 4)])
    _assert_unchanged(rnn, before)


@pytest.mark.parametrize(
    "states, message",
    [
        ([np.zeros([BATCH, UNITS])], r"states must have 2 tensors \(h, c\) of shape \[2, 5\], \[2, 5\], got 1 tensor of shape \[2, 5\]"),
        ([np.zeros([BATCH, UNITS]), np.zeros([BATCH + 1, UNITS])], r"got 2 tensors of shape \[2, 5\], \[3, 5\]"),
        ([np.zeros([BATCH, UNITS]), np.zeros([BATCH, UNITS + 1])], r"got 2 tensors of shape \[2, 5\], \[2, 6\]"),
    ],
    ids=["count", "batch", "units"],
)
def test_reset_state_with_bad_values_changes_nothing(used_stateful_lstm, states, message):
    rnn, before = used_stateful_lstm
    with pytest.raises(ValueError, match=message):
        rnn.reset_state(states=states)
    _assert_unchanged(rnn, before)


def test_reset_state_is_for_stateful_rnns():
    with pytest.raises(ValueError, match="reset_state\\(\\) is for stateful RNNs"):
        tfrnn.RNN(tfrnn.LSTMCell(UNITS)).reset_state()


def test_reset_state_before_the_first_call_does_nothing_and_the_first_call_starts_fresh():
    """A training loop that resets at the start of every epoch resets before the first call."""
    ours_cell, keras_cell = twin_cells("gru", UNITS, FEATURES)
    rnn = _stateful(ours_cell, "jit-while")
    rnn.reset_state()
    assert rnn.states == []
    inputs = random_array(20, BATCH, TIME, FEATURES)
    expected = tf_keras.layers.RNN(keras_cell, return_sequences=True)(inputs)
    assert_close(rnn(inputs)[0], expected, 1e-5, "first call")


@pytest.mark.parametrize("caller", ["function", "jit"])
def test_a_function_traced_with_an_unknown_batch_takes_the_states_batch(used_stateful_lstm, caller):
    """States exist for batch 2; a function traced for any batch runs on batches of 2 (as in
    Keras) and fails at run time on another batch, before the states change."""
    rnn, before = used_stateful_lstm
    reference = tfrnn.RNN(rnn.cell, return_sequences=True, return_state=True)
    fn = tf.function(lambda x: rnn(x), input_signature=[tf.TensorSpec([None, TIME, FEATURES])], jit_compile=caller == "jit")
    inputs = random_array(21, BATCH, TIME, FEATURES)
    outputs = fn(inputs)
    expected = reference(inputs, initial_state=before)
    for index, (actual, wanted) in enumerate(zip(outputs, expected)):
        assert_close(actual, wanted, 1e-5, f"result {index}")
    assert_close(rnn.states[1], expected[2], 1e-6, "stored c")
    stored = [v.numpy() for v in rnn.states]
    with pytest.raises(tf.errors.InvalidArgumentError, match="holds states for batch size 2, got inputs with another batch size|Incompatible shapes|is not compatible with expected shape"):
        fn(random_array(22, 3, TIME, FEATURES))
    _assert_unchanged(rnn, stored)
