"""What the built-in cells share: per-sequence dropout (as tf-keras applies it), weights API."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfrnn
from conftest import assert_close, call_in, random_array
from matrix import all_pairs, case_id
from keras_twins import twin_cells
from numpy_cells import gru_step, lstm_step, simple_step

BATCH, TIME, FEATURES, UNITS = 3, 4, 5, 6
KINDS = ("simple", "lstm", "gru", "gru_reset_before")
RATES = {"input": dict(dropout=0.4), "recurrent": dict(recurrent_dropout=0.3),
         "both": dict(dropout=0.4, recurrent_dropout=0.3)}


def _feed_keras_masks(keras_cell, masks):
    """Makes a tf-keras cell use tfrnn's masks (its own come from its own generator)."""
    input_masks, recurrent_masks = masks

    def pick(found):
        def getter(inputs, training=None, count=1):
            if not found:
                return None
            return found if count > 1 else found[0]

        return getter

    keras_cell.get_dropout_mask_for_cell = pick(input_masks)
    keras_cell.get_recurrent_dropout_mask_for_cell = pick(recurrent_masks)


def _numpy_step(kind, weights, x, states, masks):
    kwargs = dict(input_masks=masks[0], recurrent_masks=masks[1])
    if kind == "lstm":
        return list(lstm_step(x, *states, *weights, **kwargs))
    if kind == "simple":
        return [simple_step(x, states[0], *weights, **kwargs)]
    return [gru_step(x, states[0], *weights, reset_after=(kind == "gru"), **kwargs)]


@pytest.mark.parametrize("rates", RATES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_dropout_is_applied_as_tf_keras_applies_it(kind, rates):
    ours, theirs = twin_cells(kind, UNITS, FEATURES, **RATES[rates])
    masks = ours.get_dropout_masks(BATCH, training=True, seed=tf.constant([1, 2]))
    input_count, recurrent_count = ours.dropout_mask_counts()
    assert len(masks[0]) == (input_count if "dropout" in RATES[rates] else 0)
    assert len(masks[1]) == (recurrent_count if "recurrent_dropout" in RATES[rates] else 0)
    _feed_keras_masks(theirs, [[m.numpy() for m in side] for side in masks])

    x = random_array(1, BATCH, FEATURES)
    states = [random_array(2 + i, BATCH, UNITS) for i in range(len(ours.state_names))]
    ours_out, ours_states = ours(x, states, training=True, dropout_masks=masks)
    theirs_out, theirs_states = theirs(
        tf.constant(x), [tf.constant(s) for s in states], training=True
    )
    assert_close(ours_out, theirs_out, 1e-5, "step output vs tf-keras")
    numpy_masks = [[m.numpy() for m in side] for side in masks]
    expected = _numpy_step(kind, ours.get_weights(), x, states, numpy_masks)
    for a, b in zip(ours_states, expected):
        assert_close(a, b, 1e-5, "step state vs NumPy")

    # Whole sequences: the masks stay fixed over time, on both sides.
    inputs = random_array(7, BATCH, TIME, FEATURES)
    ours.get_dropout_masks = lambda batch_size, training=False, seed=None: masks
    sequence = tfrnn.RNN(ours, return_sequences=True)(inputs, training=True)
    expected = tf_keras.layers.RNN(theirs, return_sequences=True)(inputs, training=True)
    assert_close(sequence, expected, 1e-5, "sequence vs tf-keras")


def test_masks_are_fixed_over_a_sequence_and_new_for_each_call():
    cell = tfrnn.SimpleRNNCell(UNITS, activation="linear", use_bias=False, dropout=0.5, seed=1)
    cell.build([None, UNITS])
    cell.kernel.assign(tf.eye(UNITS))
    cell.recurrent_kernel.assign(tf.zeros([UNITS, UNITS]))
    rnn = tfrnn.RNN(cell, return_sequences=True)
    ones = tf.ones([8, TIME, UNITS])
    first = rnn(ones, training=True).numpy()
    for t in range(1, TIME):
        np.testing.assert_array_equal(first[:, t], first[:, 0])
    assert set(np.unique(first)) == {0.0, 2.0}
    second = rnn(ones, training=True).numpy()
    assert (first != second).any()
    np.testing.assert_array_equal(rnn(ones, training=False).numpy(), 1.0)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_compiled_backward_pass_sees_the_forward_masks(kind):
    """The jit path recomputes the forward pass for gradients: same seed, same masks."""
    results = []
    for jit_compile in (True, False):
        cell = (tfrnn.LSTMCell if kind == "lstm" else tfrnn.GRUCell)(
            UNITS, dropout=0.3, recurrent_dropout=0.3, seed=5
        )
        rnn = tfrnn.RNN(cell, return_sequences=True, jit_compile=jit_compile)
        inputs = tf.constant(random_array(8, BATCH, TIME, FEATURES))
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = rnn(inputs, training=True)
            loss = tf.reduce_sum(outputs * random_array(9, BATCH, TIME, UNITS))
        results.append([outputs] + tape.gradient(loss, [inputs] + list(cell.weights)))
    for index, (a, b) in enumerate(zip(*results)):
        assert_close(a, b, 1e-5, f"result {index}")


def test_project_inputs_of_a_sequence_equals_per_step():
    cell = tfrnn.LSTMCell(UNITS, dropout=0.5, recurrent_dropout=0.2)
    cell.build([None, FEATURES])
    masks = cell.get_dropout_masks(BATCH, training=True)
    inputs = tf.constant(random_array(10, BATCH, TIME, FEATURES))
    whole = cell.project_inputs(inputs, masks)
    for t in range(TIME):
        assert_close(whole[:, t], cell.project_inputs(inputs[:, t], masks), 1e-6)


def test_regularizers_and_constraints():
    cell = tfrnn.GRUCell(
        UNITS,
        kernel_regularizer=lambda w: 0.5 * tf.reduce_sum(w**2),
        bias_regularizer=lambda b: tf.reduce_sum(tf.abs(b)),
        recurrent_constraint=tf_keras.constraints.MaxNorm(1.0),
    )
    cell.build([None, FEATURES])
    cell.bias.assign(tf.ones_like(cell.bias))
    losses = cell.regularization_losses()
    assert len(losses) == 2
    assert_close(losses[0], 0.5 * np.sum(cell.kernel.numpy() ** 2), 1e-5)
    assert_close(losses[1], 6.0 * UNITS, 1e-5)
    assert cell.recurrent_kernel.constraint is not None and cell.kernel.constraint is None


def test_masks_before_build_are_an_error():
    with pytest.raises(ValueError, match="must be built before drawing dropout masks"):
        tfrnn.LSTMCell(UNITS, dropout=0.1).get_dropout_masks(2, training=True)


@pytest.mark.parametrize("cls, options", [
    (tfrnn.LSTMCell, dict(activation="relu", unit_forget_bias=False)),
    (tfrnn.GRUCell, dict(reset_after=False, recurrent_activation="hard_sigmoid")),
    (tfrnn.SimpleRNNCell, dict(activation="linear", use_bias=False)),
])
def test_config_round_trip(cls, options):
    cell = cls(UNITS, dropout=0.25, seed=3, **options)
    clone = cls.from_config(cell.get_config())
    assert clone.get_config() == cell.get_config()
    for key, value in options.items():
        assert cell.get_config()[key] == value
    cell.build([None, FEATURES])
    clone.build([None, FEATURES])
    for a, b in zip(cell.get_weights(), clone.get_weights()):
        np.testing.assert_array_equal(a, b)  # same seed, same initial weights


# -- low and mixed precision: the variables in one dtype, the maths in another ---------------

PRECISIONS = {
    "bfloat16": dict(dtype=tf.bfloat16),
    "mixed_bfloat16": dict(dtype=tf.float32, compute_dtype=tf.bfloat16),
    "mixed_float16": dict(dtype=tf.float32, compute_dtype=tf.float16),
}
PRECISION_CASES = all_pairs(
    {
        "kind": KINDS,
        "precision": tuple(PRECISIONS),
        "caller": ("eager", "function", "jit"),
        "loop": ("default", "unroll", "recurrent_dropout"),
    }
)
# What 16-bit maths may differ from the float32 NumPy equations by (bfloat16 keeps 8 bits).
PRECISION_TOLERANCE = {"bfloat16": 3e-2, "mixed_bfloat16": 3e-2, "mixed_float16": 3e-3}


def _numpy_sequence(kind, weights, inputs):
    states = [np.zeros([inputs.shape[0], UNITS], np.float32) for _ in range(2 if kind == "lstm" else 1)]
    outputs = []
    for t in range(inputs.shape[1]):
        states = _numpy_step(kind, weights, inputs[:, t], states, ((), ()))
        outputs.append(states[0])
    return np.stack(outputs, 1)


@pytest.mark.parametrize("case", PRECISION_CASES, ids=case_id)
def test_cells_compute_in_the_compute_dtype_and_keep_variables_in_theirs(case):
    """Outputs and states in the compute dtype, variables and their gradients in theirs,
    values within 16-bit rounding of the float32 equations (every loop path)."""
    kind, precision = case["kind"], PRECISIONS[case["precision"]]
    reference, _ = twin_cells(kind, UNITS, FEATURES)
    options = {"recurrent_dropout": 0.5} if case["loop"] == "recurrent_dropout" else {}
    cell = type(reference)(UNITS, **precision, **options, **({"reset_after": False} if kind == "gru_reset_before" else {}))
    rnn = tfrnn.RNN(cell, return_sequences=True, unroll=case["loop"] == "unroll")
    inputs = random_array(7, BATCH, TIME, FEATURES)
    rnn.build(inputs.shape)
    weights = reference.get_weights()
    cell.set_weights([w.astype(cell.dtype.as_numpy_dtype) for w in weights])

    def run(x):
        with tf.GradientTape() as tape:
            outputs = rnn(x)  # training=False: recurrent dropout off, the generic loop
            loss = tf.reduce_sum(tf.cast(outputs, tf.float32))
        return outputs, tape.gradient(loss, rnn.trainable_variables)

    outputs, grads = call_in(case["caller"], run, tf.constant(inputs))
    assert outputs.dtype == cell.compute_dtype
    assert [v.dtype for v in rnn.trainable_variables] == [cell.dtype] * len(weights)
    assert [g.dtype for g in grads] == [cell.dtype] * len(weights)
    expected = _numpy_sequence(kind, weights, inputs)
    assert_close(tf.cast(outputs, tf.float32), expected, PRECISION_TOLERANCE[case["precision"]], "outputs")
    assert all(np.isfinite(g.numpy().astype(np.float32)).all() for g in grads)


def test_a_stateful_rnn_keeps_its_states_in_the_variable_dtype():
    cell = tfrnn.LSTMCell(UNITS, dtype=tf.float32, compute_dtype=tf.bfloat16, seed=1)
    rnn = tfrnn.RNN(cell, stateful=True, return_state=True)
    _, h, c = rnn(random_array(8, BATCH, TIME, FEATURES))
    assert [v.dtype for v in rnn.states] == [tf.float32, tf.float32]
    assert h.dtype == c.dtype == tf.bfloat16
    assert_close(rnn.states[1], tf.cast(c, tf.float32), 0.0, "stored c")


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(compute_dtype="int32"), "compute_dtype must be a floating dtype, got int32"),
        (dict(dtype=tf.int8), "dtype must be a floating dtype, got int8"),
        (dict(compute_dtype="no_such_dtype"), "compute_dtype must be a floating dtype, got 'no_such_dtype'"),
    ],
)
def test_a_non_floating_dtype_is_refused(options, message):
    with pytest.raises(TypeError, match=message):
        tfrnn.LSTMCell(2, **options)
