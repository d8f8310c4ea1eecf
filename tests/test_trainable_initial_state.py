"""TrainableInitialState: a learned start state, its gradients, training, and its round trips."""

import os

import numpy as np
import pytest
import tensorflow as tf

import tfrnn
from tfrnn import export
from tfrnn import tflite
from conftest import assert_close, random_array, random_mask
from keras_twins import MinimalRNNCell
from matrix import all_pairs, case_id

BATCH, TIME, FEATURES, UNITS = 3, 4, 2, 4
CELLS = {
    "lstm": lambda: tfrnn.LSTMCell(UNITS, seed=1),
    "gru_reset_before": lambda: tfrnn.GRUCell(UNITS, reset_after=False, seed=2),
    "stacked": lambda: tfrnn.StackedRNNCells([tfrnn.LSTMCell(UNITS, seed=3), tfrnn.SimpleRNNCell(3, seed=4)]),
    "keras_minimal": lambda: MinimalRNNCell(UNITS),
    "conv_lstm": lambda: tfrnn.ConvLSTM1DCell(2, 2, padding="same", input_shape=[3, FEATURES], seed=5),
}
STEP_SHAPES = {"conv_lstm": [3, FEATURES]}

MATRIX = all_pairs(
    {
        "cell": tuple(CELLS),
        "execution": ("jit", "while", "unroll"),
        "mask": (False, True),
        "go_backwards": (False, True),
    }
)


def _wrapped(kind):
    cell = tfrnn.TrainableInitialState(CELLS[kind]())
    for index, variable in enumerate(cell.initial_state_variables):
        variable.assign(random_array(30 + index, *variable.shape))
    return cell


def _python_loop(cell, inputs, states, mask, go_backwards):
    """The reference: the wrapped cell called step by step, masked steps carrying over."""
    steps = range(inputs.shape[1])
    output = tf.zeros_like(cell(inputs[:, 0], states)[0])
    outputs = []
    for t in reversed(steps) if go_backwards else steps:
        new_output, new_states = cell(inputs[:, t], states)
        keep = tf.ones([inputs.shape[0]], tf.bool) if mask is None else tf.constant(mask[:, t])
        where = lambda new, old: tf.where(tf.reshape(keep, [-1] + [1] * (new.shape.rank - 1)), new, old)  # noqa: E731
        states = [where(n, o) for n, o in zip(tf.nest.flatten(new_states), states)]
        output = where(new_output, output)
        outputs.append(output)
    return tf.stack(outputs, 1), states


@pytest.mark.parametrize("case", MATRIX, ids=case_id)
def test_starts_from_the_variables_and_trains_them(case):
    wrapper = _wrapped(case["cell"])
    inner = wrapper.cell
    step_shape = STEP_SHAPES.get(case["cell"], [FEATURES])
    inputs = tf.constant(random_array(1, BATCH, TIME, *step_shape))
    mask = random_mask(2, BATCH, TIME) if case["mask"] else None
    rnn = tfrnn.RNN(
        wrapper, return_sequences=True, return_state=True, go_backwards=case["go_backwards"],
        jit_compile=case["execution"] == "jit", unroll=case["execution"] == "unroll",
    )  # fmt: skip
    rnn.build(inputs.shape)
    own = {id(v) for v in wrapper.initial_state_variables}
    variables = list(wrapper.initial_state_variables) + [v for v in rnn.trainable_variables if id(v) not in own]
    assert len(variables) == len(rnn.trainable_variables) > len(own)
    results = []
    for run in (
        lambda: rnn(inputs, mask=mask),
        lambda: _python_loop_flat(inner, inputs, wrapper, mask, case["go_backwards"]),
    ):
        with tf.GradientTape() as tape:
            outputs, *states = run()
            loss = tf.reduce_sum(outputs * 0.7) + sum(tf.reduce_sum(s * s) for s in states)
        results.append((outputs, states, tape.gradient(loss, variables)))
    (outputs, states, gradients), (expected_outputs, expected_states, expected_gradients) = results
    assert_close(outputs, expected_outputs, 1e-5, "outputs")
    for ours, theirs in zip(states, expected_states):
        assert_close(ours, theirs, 1e-5, "final states")
    for variable, ours, theirs in zip(variables, gradients, expected_gradients):
        assert ours is not None, f"no gradient for {variable.name}"
        assert_close(ours, theirs, 1e-4, f"d {variable.name}")
    assert float(tf.reduce_sum(tf.abs(gradients[0]))) > 0.0


def _python_loop_flat(inner, inputs, wrapper, mask, go_backwards):
    states = [tf.broadcast_to(v[None], [BATCH] + v.shape.as_list()) for v in wrapper.initial_state_variables]
    outputs, final_states = _python_loop(inner, inputs, states, mask, go_backwards)
    return [outputs] + final_states


def test_a_task_only_the_initial_state_can_solve_trains():
    """Targets from a start state the model does not know, the weights fixed: only the learned
    initial state can bring the loss down (to zero: the teacher's start solves it)."""
    wrapper = tfrnn.TrainableInitialState(tfrnn.LSTMCell(UNITS, seed=6))
    rnn = tfrnn.RNN(wrapper, return_sequences=True)
    inputs = tf.constant(random_array(7, BATCH, TIME, FEATURES))
    teacher_start = [random_array(8, 1, UNITS).repeat(BATCH, 0), random_array(9, 1, UNITS).repeat(BATCH, 0)]
    target = tfrnn.RNN(wrapper.cell, return_sequences=True)(inputs, initial_state=teacher_start)
    optimizer = tf.keras.optimizers.Adam(0.05)
    variables = wrapper.initial_state_variables

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((rnn(inputs) - target) ** 2)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    losses = [float(train_step()) for _ in range(80)]
    assert np.isfinite(losses).all() and losses[-1] < 0.1 * losses[0], losses[::10]
    plain_loss = float(tf.reduce_mean((tfrnn.RNN(wrapper.cell, return_sequences=True)(inputs) - target) ** 2))
    assert abs(plain_loss - losses[0]) < 1e-6  # zeros at first: the plain cell's start


def test_stateful_first_call_and_reset_state_use_the_variables():
    wrapper = _wrapped("lstm")
    rnn = tfrnn.RNN(wrapper, stateful=True, return_state=True)
    inputs = random_array(1, BATCH, TIME, FEATURES)
    start = [s.numpy() for s in wrapper.get_initial_state(BATCH)]
    reference = tfrnn.RNN(wrapper.cell, return_state=True)
    _, *expected = reference(inputs, initial_state=start)
    _, *states = rnn(inputs)
    for ours, theirs in zip(states, expected):
        assert_close(ours, theirs, 1e-6, "first call")
    _, *carried = rnn(inputs)
    assert np.abs(carried[1].numpy() - states[1].numpy()).max() > 1e-3  # the states carried on
    wrapper.initial_state_variables[0].assign(tf.ones([UNITS]))
    rnn.reset_state()
    assert_close(rnn.states[0], np.ones([BATCH, UNITS]), 0.0, "reset_state reads the variables now")


def test_weights_checkpoint_and_config_round_trip(tmp_path):
    wrapper = _wrapped("lstm")
    wrapper.build([None, FEATURES])
    names = [v.name.split("/")[-1] for v in wrapper.weights]
    assert names == ["kernel:0", "recurrent_kernel:0", "bias:0", "initial_h:0", "initial_c:0"]
    saved = wrapper.get_weights()
    checkpoint = tf.train.Checkpoint(cell=wrapper)
    path = checkpoint.write(os.path.join(tmp_path, "ckpt"))
    wrapper.set_weights([np.zeros_like(w) for w in saved])
    checkpoint.read(path).assert_consumed()
    for ours, theirs in zip(wrapper.get_weights(), saved):
        np.testing.assert_array_equal(ours, theirs)
    twin = tfrnn.TrainableInitialState.from_config(wrapper.get_config())
    assert twin.cell is wrapper.cell and twin.initializer == "zeros"


def test_saved_model_initial_state_signature_returns_the_variables(tmp_path):
    wrapper = _wrapped("lstm")
    rnn = tfrnn.RNN(wrapper, return_sequences=True)
    rnn.build([None, None, FEATURES])
    result = export.export_saved_model(rnn, os.path.join(tmp_path, "m"), mask=True)
    assert result.signatures == ["serving_default", "step", "initial_state"]
    loaded = tf.saved_model.load(result.path)
    states = loaded.signatures["initial_state"](batch_size=tf.constant(2))
    for index, variable in enumerate(wrapper.initial_state_variables):
        assert_close(states[f"state_{index}"], np.broadcast_to(variable.numpy(), [2, UNITS]), 0.0)
    inputs = random_array(3, 2, TIME, FEATURES)
    mask = random_mask(4, 2, TIME)
    served = loaded.signatures["serving_default"](inputs=tf.constant(inputs), mask=tf.constant(mask))
    assert_close(served["outputs"], rnn(inputs, mask=mask), 1e-5)
    converted = tflite.convert(result.path)
    assert converted.fused_lstms == 0 and "WHILE" in converted.ops
    runner = tflite.interpreter(converted.model_content).get_signature_runner("serving_default")
    # The export's TFLite functions have a fixed batch of 1 (tflite_batch_size).
    for row in range(2):
        x, m = inputs[row : row + 1], mask[row : row + 1]
        assert_close(runner(inputs=x, mask=m)["outputs"], rnn(x, mask=m), 1e-4, f"LiteRT row {row}")
    # The learned start matters here: from zeros the outputs differ.
    zeros = [tf.zeros([2, UNITS])] * 2
    assert np.max(np.abs(rnn(inputs, mask=mask) - rnn(inputs, mask=mask, initial_state=zeros))) > 1e-2
    # LiteRT's step, streamed from the SavedModel's initial_state (TFLite has no initial_state
    # signature: a device gets the start from the export), reproduces the sequence.
    step = tflite.interpreter(converted.model_content).get_signature_runner("step")
    states = {k: v.numpy() for k, v in loaded.signatures["initial_state"](batch_size=tf.constant(1)).items()}
    x, m = inputs[:1], np.ones([1, TIME], bool)
    expected = rnn(x, mask=m)
    for t in range(TIME):
        streamed = step(inputs=x[:, t], mask=m[:, t], **states)
        assert_close(streamed["outputs"], expected[:, t], 1e-4, f"LiteRT step {t}")
        states = {k: streamed[k] for k in states}


def test_bad_arguments():
    with pytest.raises(TypeError, match="cell must be one cell, got a list"):
        tfrnn.TrainableInitialState([tfrnn.LSTMCell(2)])
    with pytest.raises(ValueError, match="initializer must be one of"):
        tfrnn.TrainableInitialState(tfrnn.LSTMCell(2), initializer="nope")
    with pytest.raises(ValueError, match="is not built, so its states' shape"):
        tfrnn.TrainableInitialState(tfrnn.ConvLSTM2DCell(2, 2))
