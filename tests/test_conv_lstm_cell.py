"""ConvLSTM1D/2D/3D cells against keras.layers.ConvLSTM*D and tf_keras.layers.ConvLSTM*D."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfrnn
from conftest import assert_close, random_array, random_mask
from matrix import all_pairs, case_id

BATCH, TIME, CHANNELS, FILTERS = 3, 4, 2, 3
# Tiny images; the 2-D kernel is not square, so a transposed weight layout would show.
SPATIAL = {1: [4], 2: [4, 5], 3: [3, 4, 3]}
KERNEL = {1: 2, 2: (2, 3), 3: 2}
CELLS = {1: tfrnn.ConvLSTM1DCell, 2: tfrnn.ConvLSTM2DCell, 3: tfrnn.ConvLSTM3DCell}
KERAS = {
    "keras": {1: keras.layers.ConvLSTM1D, 2: keras.layers.ConvLSTM2D, 3: keras.layers.ConvLSTM3D},
    "tf_keras": {
        1: tf_keras.layers.ConvLSTM1D, 2: tf_keras.layers.ConvLSTM2D, 3: tf_keras.layers.ConvLSTM3D,
    },
}  # fmt: skip

MATRIX = all_pairs(
    {
        "rank": (1, 2, 3),
        "padding": ("valid", "same"),
        "strides": (1, 2),
        "dilation_rate": (1, 2),
        "return_sequences": (True, False),
        "go_backwards": (False, True),
        "mask": (False, True),
        "initial_state": (False, True),
        "execution": ("jit", "while", "unroll"),
        "reference": ("keras", "tf_keras"),
    },
    # Keras refuses strides > 1 with dilation > 1.
    allowed=lambda case: not (case["strides"] > 1 and case["dilation_rate"] > 1),
)


def _options(case):
    return dict(
        padding=case["padding"], strides=case["strides"], dilation_rate=case["dilation_rate"],
        recurrent_activation="sigmoid",
    )  # fmt: skip


def _reference_layer(case):
    """The Keras layer, built, with a non-trivial bias."""
    layer = KERAS[case["reference"]][case["rank"]](
        FILTERS, KERNEL[case["rank"]], return_sequences=case["return_sequences"],
        return_state=True, go_backwards=case["go_backwards"], **_options(case),
    )  # fmt: skip
    layer.build((None, None, *SPATIAL[case["rank"]], CHANNELS))
    weights = layer.get_weights()
    weights[2] = random_array(9, *weights[2].shape) * 0.5
    layer.set_weights(weights)
    return layer


def _keras_results(layer, inputs, mask, initial_state, upstream):
    """`(loss, outputs, [h, c], gradients of loss for [inputs, kernel, recurrent, bias])`."""
    x = tf.constant(inputs)
    with tf.GradientTape() as tape:
        tape.watch(x)
        kwargs = {"mask": tf.constant(mask)} if mask is not None else {}
        if initial_state is not None:
            kwargs["initial_state"] = [tf.constant(s) for s in initial_state]
        output, h, c = layer(x, **kwargs)
        loss = tf.reduce_sum(output * upstream[0]) + tf.reduce_sum(h * upstream[1]) + tf.reduce_sum(
            c * upstream[2]
        )
    gradients = tape.gradient(loss, [x] + list(layer.trainable_weights))
    return output.numpy(), [h.numpy(), c.numpy()], [g.numpy() for g in gradients]


def _tfrnn_results(cell, case, inputs, mask, initial_state, upstream):
    rnn = tfrnn.RNN(
        cell, return_sequences=case["return_sequences"], return_state=True,
        go_backwards=case["go_backwards"], unroll=case["execution"] == "unroll",
        jit_compile=case["execution"] == "jit",
    )  # fmt: skip
    x = tf.constant(inputs)
    with tf.GradientTape() as tape:
        tape.watch(x)
        output, h, c = rnn(
            x,
            mask=None if mask is None else tf.constant(mask),
            initial_state=None if initial_state is None else [tf.constant(s) for s in initial_state],
        )
        loss = tf.reduce_sum(output * upstream[0]) + tf.reduce_sum(h * upstream[1]) + tf.reduce_sum(
            c * upstream[2]
        )
    gradients = tape.gradient(loss, [x, cell.kernel, cell.recurrent_kernel, cell.bias])
    return output.numpy(), [h.numpy(), c.numpy()], [g.numpy() for g in gradients]


@pytest.mark.parametrize("case", MATRIX, ids=case_id)
def test_matches_keras(case):
    rank = case["rank"]
    reference = _reference_layer(case)
    cell = CELLS[rank](FILTERS, KERNEL[rank], input_shape=SPATIAL[rank] + [CHANNELS], **_options(case))
    cell.set_weights(reference.get_weights())
    inputs = random_array(1, BATCH, TIME, *SPATIAL[rank], CHANNELS)
    mask = random_mask(2, BATCH, TIME) if case["mask"] else None
    state_shape = [BATCH] + cell.state_size[0]
    initial_state = [random_array(3, *state_shape), random_array(4, *state_shape)] if case["initial_state"] else None
    output_shape = [BATCH] + ([TIME] if case["return_sequences"] else []) + cell.state_size[0]
    upstream = [random_array(5, *output_shape), random_array(6, *state_shape), random_array(7, *state_shape)]
    expected = _keras_results(reference, inputs, mask, initial_state, upstream)
    actual = _tfrnn_results(cell, case, inputs, mask, initial_state, upstream)
    assert_close(actual[0], expected[0], 1e-5, "outputs")
    for name, ours, theirs in zip(("h", "c"), actual[1], expected[1]):
        assert_close(ours, theirs, 1e-5, name)
    for name, ours, theirs in zip(("inputs", "kernel", "recurrent_kernel", "bias"), actual[2], expected[2]):
        assert_close(ours, theirs, 1e-4, f"d {name}")


def test_tf_keras_default_recurrent_activation_is_hard_sigmoid():
    """tf-keras' ConvLSTM layers default to hard_sigmoid; the cell (like Keras 3's) to sigmoid."""
    assert tfrnn.ConvLSTM2DCell(FILTERS, 2).recurrent_activation_name == "sigmoid"
    reference = tf_keras.layers.ConvLSTM2D(FILTERS, 2, return_sequences=True)
    inputs = random_array(1, BATCH, TIME, 4, 4, CHANNELS)
    expected = reference(inputs)
    cell = tfrnn.ConvLSTM2DCell(FILTERS, 2, recurrent_activation="hard_sigmoid", input_shape=[4, 4, CHANNELS])
    cell.set_weights(reference.get_weights())
    assert_close(tfrnn.RNN(cell, return_sequences=True)(inputs), expected, 1e-5)


def test_stateful_matches_keras_over_two_calls():
    reference = keras.layers.ConvLSTM2D(FILTERS, 2, padding="same", stateful=True, return_sequences=True)
    inputs = random_array(1, BATCH, 2 * TIME, 4, 4, CHANNELS)
    reference.build((BATCH, None, 4, 4, CHANNELS))
    cell = tfrnn.ConvLSTM2DCell(FILTERS, 2, padding="same", input_shape=[4, 4, CHANNELS])
    cell.set_weights(reference.get_weights())
    rnn = tfrnn.RNN(cell, stateful=True, return_sequences=True)
    for half in (inputs[:, :TIME], inputs[:, TIME:]):
        assert_close(rnn(half), reference(half), 1e-5, "stateful call")
    assert rnn.states[0].shape == [BATCH, 4, 4, FILTERS]
    rnn.reset_state()
    reference.reset_state()
    assert_close(rnn(inputs[:, :TIME]), reference(inputs[:, :TIME]), 1e-5, "after reset_state")


def test_dropout_masks_have_the_image_shapes():
    cell = tfrnn.ConvLSTM2DCell(
        FILTERS, 2, dropout=0.5, recurrent_dropout=0.5, seed=1, input_shape=[4, 4, CHANNELS]
    )
    input_masks, recurrent_masks = cell.get_dropout_masks(BATCH, training=True, seed=tf.constant([1, 2]))
    assert [m.shape for m in input_masks] == [[BATCH, 4, 4, CHANNELS]] * 4
    assert [m.shape for m in recurrent_masks] == [[BATCH, 3, 3, FILTERS]] * 4
    rnn = tfrnn.RNN(cell)
    inputs = random_array(1, BATCH, TIME, 4, 4, CHANNELS)
    trained, inferred = rnn(inputs, training=True), rnn(inputs)
    assert np.all(np.isfinite(trained.numpy())) and np.abs(trained.numpy() - inferred.numpy()).max() > 1e-3
    assert_close(rnn(inputs), inferred, 0.0, "no dropout without training")


def test_single_step_call_and_config_round_trip():
    cell = tfrnn.ConvLSTM3DCell(FILTERS, 2, strides=(1, 2, 1), use_bias=False, input_shape=[3, 4, 3, CHANNELS])
    config = cell.get_config()
    assert "rank" not in config and config["input_shape"] == [3, 4, 3, CHANNELS]
    twin = tfrnn.ConvLSTM3DCell.from_config(config)
    twin.set_weights(cell.get_weights())
    x = random_array(1, BATCH, 3, 4, 3, CHANNELS)
    h0 = random_array(2, BATCH, 2, 2, 2, FILTERS)
    output, (h, c) = cell(x, [h0, h0])
    twin_output, _ = twin(x, [h0, h0])
    assert output.shape == [BATCH, 2, 2, 2, FILTERS] and c.shape == h.shape
    assert_close(output, twin_output, 0.0)
    generic = tfrnn.ConvLSTMCell(1, FILTERS, 2, input_shape=[4, CHANNELS])
    assert generic.get_config()["rank"] == 1 and generic.state_size == [[3, FILTERS], [3, FILTERS]]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: tfrnn.ConvLSTM2DCell(0, 2), "filters must be a positive int, got 0"),
        (lambda: tfrnn.ConvLSTMCell(4, 3, 2), "rank must be 1, 2 or 3"),
        (lambda: tfrnn.ConvLSTM2DCell(3, (2, 2, 2)), r"kernel_size must be a positive int or 2 positive ints"),
        (lambda: tfrnn.ConvLSTM2DCell(3, 2, strides=0), "strides must be a positive int"),
        (lambda: tfrnn.ConvLSTM2DCell(3, 2, padding="causal"), "padding must be 'valid' or 'same'"),
        (
            lambda: tfrnn.ConvLSTM2DCell(3, 2, strides=2, dilation_rate=2),
            r"strides > 1 is not compatible with dilation_rate > 1 .*strides=\(2, 2\) and dilation_rate=\(2, 2\)",
        ),
        (
            lambda: tfrnn.ConvLSTM2DCell(3, 2, data_format="channels_first"),
            "data_format='channels_first' is not supported: .*channels-last",
        ),
        (
            lambda: tfrnn.ConvLSTM2DCell(3, 3, input_shape=[2, 2, 1]),
            r"inputs of spatial shape \[2, 2\] are too small for kernel_size \(3, 3\)",
        ),
        (
            lambda: tfrnn.RNN(tfrnn.ConvLSTM2DCell(3, 2)),
            r"not built, so its states' shape .* create it with input_shape=\[rows, cols, channels\]",
        ),
        (
            lambda: tfrnn.ConvLSTM2DCell(3, 2, input_shape=[4, 4]),
            r"takes inputs \[batch, time, rows, cols, channels\] .* got steps of shape \(None, 4, 4\)",
        ),
    ],
)
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_inputs_of_the_wrong_rank_name_the_expected_layout():
    rnn = tfrnn.RNN(tfrnn.ConvLSTM2DCell(3, 2, input_shape=[4, 4, CHANNELS]))
    with pytest.raises(ValueError, match=r"takes inputs \[batch, time, rows, cols, channels\] .*got steps of shape \(2, 4, 2\)"):
        rnn(tf.zeros([2, 3, 4, CHANNELS]))
    assert rnn.states == [] and rnn.input_shape is None


# -- deployment: SavedModel (serving_default, step) and TFLite ---------------------------------


def test_conv_lstm_2d_exports_and_converts_to_conv_2d_in_a_while_loop(tmp_path):
    from tfrnn import export, tflite

    cell = tfrnn.ConvLSTM2DCell(FILTERS, 2, padding="same", strides=2, seed=1, input_shape=[4, 4, CHANNELS])
    rnn = tfrnn.RNN(cell, return_sequences=True, return_state=True)
    rnn.build([None, None, 4, 4, CHANNELS])
    result = export.export_saved_model(rnn, str(tmp_path / "conv"), mask=True)
    assert result.signatures == ["serving_default", "step", "initial_state"]
    assert max(result.max_abs_error.values()) <= 1e-5
    inputs, mask = random_array(1, 1, TIME, 4, 4, CHANNELS), random_mask(2, 1, TIME)
    loaded = tf.saved_model.load(result.path).signatures["serving_default"]
    served = loaded(inputs=tf.constant(inputs), mask=tf.constant(mask))
    for name, value in zip(["outputs", "state_0", "state_1"], rnn(inputs, mask=mask)):
        assert_close(served[name], value, 1e-5, f"SavedModel {name}")
    converted = tflite.convert(result.path)
    assert {"CONV_2D", "WHILE"} <= set(converted.ops) and not [op for op in converted.ops if op.startswith("CUSTOM")]
    assert converted.signatures == ["serving_default", "step"]
    runner = tflite.interpreter(converted.model_content).get_signature_runner("serving_default")
    lite = runner(inputs=inputs, mask=mask)
    for name, value in zip(["outputs", "state_0", "state_1"], rnn(inputs, mask=mask)):
        assert_close(lite[name], value, 1e-4, f"LiteRT {name}")


@pytest.mark.parametrize(
    "rank, options, op",
    [(1, dict(dilation_rate=2), "CONV_2D"), (3, dict(dilation_rate=2), "CONV_3D"), (3, dict(strides=2, padding="same"), "CONV_3D")],
)
def test_conv_lstm_1d_and_3d_convert_with_builtin_ops(rank, options, op):
    from tfrnn import tflite

    spatial = {1: [5], 3: [5, 4, 4]}[rank]
    cell = CELLS[rank](FILTERS, 2, seed=2, input_shape=spatial + [CHANNELS], **options)
    rnn = tfrnn.RNN(cell)
    rnn.build([None, None] + spatial + [CHANNELS])
    converted = tflite.convert(rnn, batch_size=None)
    assert op in converted.ops and "WHILE" in converted.ops, converted.ops
    assert max(converted.max_abs_error.values()) <= 1e-4
