"""tfrnn.Bidirectional against keras.layers.Bidirectional and tf_keras.layers.Bidirectional."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfrnn
from tfrnn import export
from tfrnn import tflite
from conftest import assert_close, random_array, random_mask
from matrix import all_pairs, case_id

BATCH, TIME, FEATURES, UNITS = 3, 5, 2, 4
CELLS = {"lstm": tfrnn.LSTMCell, "gru": tfrnn.GRUCell}
LAYERS = {
    "keras": {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "wrapper": keras.layers.Bidirectional},
    "tf_keras": {"lstm": tf_keras.layers.LSTM, "gru": tf_keras.layers.GRU, "wrapper": tf_keras.layers.Bidirectional},
}
NUM_STATES = {"lstm": 2, "gru": 1}

MATRIX = all_pairs(
    {
        "cell": ("lstm", "gru"),
        "merge_mode": ("concat", "sum", "mul", "ave", None),
        "return_sequences": (True, False),
        "return_state": (False, True),
        "mask": (False, True),
        "initial_state": (False, True),
        "reference": ("keras", "tf_keras"),
    }
)


def _reference(case):
    layers = LAYERS[case["reference"]]
    inner = layers[case["cell"]](UNITS, return_sequences=case["return_sequences"], return_state=case["return_state"])
    wrapper = layers["wrapper"](inner, merge_mode=case["merge_mode"])
    wrapper.build((None, TIME, FEATURES))
    weights = [w + random_array(20 + i, *w.shape) * 0.3 for i, w in enumerate(wrapper.get_weights())]
    wrapper.set_weights(weights)
    return wrapper, weights


def _ours(case, weights):
    # Without XLA: what is tested here is the wrapper, not the loops (tested with each cell).
    rnn = tfrnn.RNN(
        CELLS[case["cell"]](UNITS), return_sequences=case["return_sequences"],
        return_state=case["return_state"], jit_compile=False,
    )  # fmt: skip
    bi = tfrnn.Bidirectional(rnn, merge_mode=case["merge_mode"])
    bi.build([None, None, FEATURES])
    half = len(weights) // 2
    bi.forward_layer.cell.set_weights(weights[:half])
    bi.backward_layer.cell.set_weights(weights[half:])
    return bi


def _run(layer, inputs, kwargs, upstream):
    x = tf.constant(inputs)
    with tf.GradientTape() as tape:
        tape.watch(x)
        results = tf.nest.flatten(layer(x, **kwargs))
        loss = sum(tf.reduce_sum(r * u) for r, u in zip(results, upstream))
    return [r.numpy() for r in results], tape.gradient(loss, x).numpy()


@pytest.mark.parametrize("case", MATRIX, ids=case_id)
def test_matches_keras(case):
    reference, weights = _reference(case)
    bi = _ours(case, weights)
    inputs = random_array(1, BATCH, TIME, FEATURES)
    kwargs = {}
    if case["mask"]:
        kwargs["mask"] = tf.constant(random_mask(2, BATCH, TIME))
    if case["initial_state"]:
        kwargs["initial_state"] = [tf.constant(random_array(3 + i, BATCH, UNITS)) for i in range(2 * NUM_STATES[case["cell"]])]
    reference_results = tf.nest.flatten(reference(tf.constant(inputs), **kwargs))
    upstream = [random_array(10 + i, *r.shape) for i, r in enumerate(reference_results)]
    expected, expected_gradient = _run(reference, inputs, kwargs, upstream)
    actual, gradient = _run(bi, inputs, kwargs, upstream)
    assert len(actual) == len(expected)
    for index, (ours, theirs) in enumerate(zip(actual, expected)):
        assert_close(ours, theirs, 1e-5, f"result {index}")
    assert_close(gradient, expected_gradient, 1e-4, "d inputs")


def test_stateful_carries_both_halves_and_resets():
    reference = keras.layers.Bidirectional(keras.layers.LSTM(UNITS, stateful=True, return_sequences=True))
    reference.build((BATCH, TIME, FEATURES))
    bi = tfrnn.Bidirectional(tfrnn.RNN(tfrnn.LSTMCell(UNITS), stateful=True, return_sequences=True))
    bi.build([BATCH, None, FEATURES])
    weights = reference.get_weights()
    bi.forward_layer.cell.set_weights(weights[:3])
    bi.backward_layer.cell.set_weights(weights[3:])
    first, second = random_array(1, BATCH, TIME, FEATURES), random_array(2, BATCH, TIME, FEATURES)
    for call, inputs in enumerate((first, second)):
        assert_close(bi(inputs), reference(inputs), 1e-5, f"call {call}")
    assert len(bi.states) == 4 and all(s.shape == [BATCH, UNITS] for s in bi.states)
    bi.reset_state()
    fresh = tfrnn.Bidirectional(tfrnn.RNN(bi.forward_layer.cell, return_sequences=True), backward_layer=tfrnn.RNN(bi.backward_layer.cell, return_sequences=True, go_backwards=True))
    assert_close(bi(first), fresh(first), 1e-6, "after reset_state")
    values = [np.full([BATCH, UNITS], float(i)) for i in range(4)]
    bi.reset_state(values)
    for state, value in zip(bi.states, values):
        assert_close(state, value, 0.0)
    with pytest.raises(ValueError, match=r"states must be 4 tensors of shape \[3, 4\], .*got 4 tensors of shape \[2, 4\]"):
        bi.reset_state([np.zeros([2, UNITS])] * 4)
    assert_close(bi.states[0], values[0], 0.0, "nothing changed")


def test_the_backward_half_is_a_fresh_copy_with_the_other_direction():
    layer = tfrnn.RNN(tfrnn.StackedRNNCells([tfrnn.LSTMCell(3, seed=7), tfrnn.GRUCell(2, seed=8)]), go_backwards=True)
    bi = tfrnn.Bidirectional(layer, merge_mode="sum")
    assert bi.forward_layer.cell is layer.cell and bi.forward_layer.go_backwards
    assert not bi.backward_layer.go_backwards and bi.backward_layer.cell is not layer.cell
    bi.build([None, None, FEATURES])
    assert [c.seed for c in bi.backward_layer.cell.cells] == [8, 9]
    forward, backward = (c.cell.cells[0].get_weights() for c in (bi.forward_layer, bi.backward_layer))
    assert [w.shape for w in forward] == [w.shape for w in backward]
    assert np.abs(forward[0] - backward[0]).max() > 1e-3  # not the same initial weights
    assert bi.forward_layer.name == "forward_rnn" and bi.backward_layer.name == "backward_rnn"


def test_export_has_serving_default_only_and_two_fused_lstms(tmp_path):
    bi = tfrnn.Bidirectional(tfrnn.RNN(tfrnn.LSTMCell(UNITS, seed=1), return_sequences=True))
    bi.build([None, None, FEATURES])
    result = export.export_saved_model(bi, os.path.join(tmp_path, "bi"))
    assert result.signatures == ["serving_default"]
    loaded = tf.saved_model.load(result.path)
    inputs = random_array(1, 2, TIME, FEATURES)
    assert_close(loaded.signatures["serving_default"](inputs=tf.constant(inputs))["outputs"], bi(inputs), 1e-5)
    converted = tflite.convert(result.path)
    assert converted.fused_lstms == 2 and converted.signatures == ["serving_default"], converted.ops
    runner = tflite.interpreter(converted.model_content).get_signature_runner("serving_default")
    for row in range(2):  # the fused ops' batch is the export's tflite_batch_size, 1
        assert_close(runner(inputs=inputs[row : row + 1])["outputs"], bi(inputs[row : row + 1]), 1e-4, "LiteRT")


def test_masked_gru_with_states_exports_and_converts(tmp_path):
    bi = tfrnn.Bidirectional(tfrnn.RNN(tfrnn.GRUCell(UNITS, seed=2), return_state=True), merge_mode="ave")
    bi.build([None, None, FEATURES])
    result = export.export_saved_model(bi, os.path.join(tmp_path, "bi"), mask=True)
    inputs, mask = random_array(1, 2, TIME, FEATURES), random_mask(2, 2, TIME)
    served = tf.saved_model.load(result.path).signatures["serving_default"](inputs=tf.constant(inputs), mask=tf.constant(mask))
    expected = bi(inputs, mask=mask)
    assert sorted(served) == ["outputs", "state_0", "state_1"]
    for name, value in zip(["outputs", "state_0", "state_1"], expected):
        assert_close(served[name], value, 1e-5, name)
    converted = tflite.convert(bi, mask=True, batch_size=None)
    assert converted.fused_lstms == 0 and converted.max_abs_error["serving_default"] <= 1e-4


def test_merge_mode_none_cannot_be_exported(tmp_path):
    bi = tfrnn.Bidirectional(tfrnn.RNN(tfrnn.GRUCell(UNITS)), merge_mode=None)
    bi.build([None, None, FEATURES])
    with pytest.raises(ValueError, match="merge_mode=None returns two outputs"):
        export.export_saved_model(bi, os.path.join(tmp_path, "bi"))


class _NoConfigCell(tfrnn.RNNCell):
    state_size = 2

    def call(self, inputs, states, training=False):
        return states[0], states


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: tfrnn.Bidirectional(tfrnn.LSTMCell(2)), TypeError, "layer must be a tfrnn.RNN, got LSTMCell"),
        (
            lambda: tfrnn.Bidirectional(tfrnn.RNN(tfrnn.LSTMCell(2)), backward_layer=keras.layers.LSTM(2)),
            TypeError, "backward_layer must be a tfrnn.RNN, got LSTM",
        ),
        (lambda: tfrnn.Bidirectional(tfrnn.RNN(tfrnn.LSTMCell(2)), merge_mode="max"), ValueError, "merge_mode must be one of"),
        (
            lambda: tfrnn.Bidirectional(
                tfrnn.RNN(tfrnn.LSTMCell(2), return_sequences=True),
                backward_layer=tfrnn.RNN(tfrnn.LSTMCell(2), go_backwards=True),
            ),
            ValueError, "must have the same return_sequences, got True for layer and False for backward_layer",
        ),
        (
            lambda: tfrnn.Bidirectional(
                tfrnn.RNN(tfrnn.LSTMCell(2), return_state=True),
                backward_layer=tfrnn.RNN(tfrnn.LSTMCell(2), go_backwards=True),
            ),
            ValueError, "must have the same return_state, got True for layer and False for backward_layer",
        ),
        (
            lambda: tfrnn.Bidirectional(
                tfrnn.RNN(tfrnn.LSTMCell(2)),
                backward_layer=tfrnn.RNN(tfrnn.LSTMCell(2), go_backwards=True, stateful=True),
            ),
            ValueError, "must have the same stateful, got False for layer and True for backward_layer",
        ),
        (
            lambda: tfrnn.Bidirectional(tfrnn.keras.LSTM(2)),
            TypeError, "layer must be a tfrnn.RNN, got LSTM; in a Keras model use the Keras adapter's Bidirectional",
        ),
        (
            lambda: tfrnn.Bidirectional(tfrnn.RNN(tfrnn.LSTMCell(2)), backward_layer=tfrnn.RNN(tfrnn.LSTMCell(2))),
            ValueError, "must have different go_backwards values, got go_backwards=False for both",
        ),
        (lambda: tfrnn.Bidirectional(tfrnn.RNN(_NoConfigCell())), TypeError, "has no get_config"),
    ],
)
def test_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_initial_state_of_the_wrong_length():
    bi = tfrnn.Bidirectional(tfrnn.RNN(tfrnn.LSTMCell(UNITS)))
    with pytest.raises(ValueError, match=r"initial_state must be a flat list of 4 tensors, the forward RNN's 2 then the backward RNN's 2 .*got 2 tensors"):
        bi(tf.zeros([BATCH, TIME, FEATURES]), initial_state=[tf.zeros([BATCH, UNITS])] * 2)
    with pytest.raises(ValueError, match="reset_state\\(\\) is for stateful RNNs"):
        bi.reset_state()
