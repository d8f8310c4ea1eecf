"""tfrnn.keras.ConvLSTM1D/2D/3D against keras.layers.ConvLSTM*D holding the same weights."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfrnn
from conftest import assert_close, random_array, random_mask
import conv_lstm_twins as twins
from conv_lstm_twins import BATCH, CHANNELS, FILTERS, SPATIAL, TIME
from matrix import case_id

OURS = {1: tfrnn.keras.ConvLSTM1D, 2: tfrnn.keras.ConvLSTM2D, 3: tfrnn.keras.ConvLSTM3D}
THEIRS = {1: keras.layers.ConvLSTM1D, 2: keras.layers.ConvLSTM2D, 3: keras.layers.ConvLSTM3D}
# Keras 3's RNN drops the mask when it gets an initial_state (tfrnn keeps it: tests/test_keras.py);
# unroll is in our signature, Keras 3 takes it through **kwargs.
MATRIX = twins.matrix(allowed=lambda case: not (case["mask"] and case["initial_state"]))


def _pair(case, **options):
    return twins.make_pair(OURS[case["rank"]], THEIRS[case["rank"]], case, **options)


@pytest.mark.parametrize("case", MATRIX, ids=case_id)
def test_matches_keras(case):
    twins.check_matches(*_pair(case), case)


def test_xla_compiled_loop_and_stateful_calls_match_keras():
    case = dict(rank=2, padding="same", strides=1, dilation_rate=1, return_sequences=True,
                return_state=True, go_backwards=False, jit=True)  # fmt: skip
    twins.check_stateful_calls(*_pair(case, stateful=True), case["rank"], "reset_state")


@pytest.fixture(scope="module")
def model_pair():
    """Two-layer models (ConvLSTM2D then ConvLSTM1D over rows), ours and Keras', same weights."""

    def model(conv2d, conv1d):
        inputs = keras.Input((TIME, *SPATIAL[2], CHANNELS), batch_size=BATCH)
        hidden = conv2d(FILTERS, 3, padding="same", return_sequences=True, **extra)(inputs)
        hidden = keras.layers.Reshape((TIME, SPATIAL[2][0], SPATIAL[2][1] * FILTERS))(hidden)
        return keras.Model(inputs, conv1d(FILTERS, 2, strides=2, **extra)(hidden))

    extra = {"jit_compile": False}
    ours = model(tfrnn.keras.ConvLSTM2D, tfrnn.keras.ConvLSTM1D)
    extra = {}
    theirs = model(keras.layers.ConvLSTM2D, keras.layers.ConvLSTM1D)
    rng = np.random.RandomState(4)
    theirs.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.3 for w in theirs.weights])
    return ours, theirs, random_array(5, BATCH, TIME, *SPATIAL[2], CHANNELS)


def test_symbolic_shapes_weights_and_weight_files_both_ways(model_pair, tmp_path):
    ours, theirs, x = model_pair
    assert ours.output_shape == theirs.output_shape == (BATCH, 2, FILTERS)

    def layout(model):  # the weights' paths without the layers' own (numbered) names
        return [(w.path.split("/", 1)[1], tuple(w.shape)) for w in model.weights]

    assert layout(ours) == layout(theirs)
    theirs.save_weights(tmp_path / "theirs.weights.h5")
    ours.load_weights(tmp_path / "theirs.weights.h5")
    assert_close(ours(x), theirs(x), 1e-5, "ours from Keras' file")
    ours.save_weights(tmp_path / "ours.weights.h5")
    copy = keras.models.clone_model(theirs)
    copy.load_weights(tmp_path / "ours.weights.h5")
    assert_close(copy(x), theirs(x), 1e-5, "Keras' from our file")


def test_config_and_keras_file_round_trip(model_pair, tmp_path):
    ours, theirs, x = model_pair
    ours.set_weights(theirs.get_weights())
    layer = ours.layers[1]
    config = layer.get_config()
    keras_config = theirs.layers[1].get_config()
    assert set(keras_config) - {"name"} <= set(config), set(keras_config) - set(config)
    assert config["jit_compile"] is False and config["filters"] == FILTERS
    rebuilt = type(layer).from_config(config)
    assert rebuilt.get_config() == config
    ours.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.layers[1]) is tfrnn.keras.ConvLSTM2D
    assert_close(loaded.predict(x, verbose=0), theirs.predict(x, verbose=0), 1e-5, "loaded")


def test_fit_trains_a_model_with_dropout():
    inputs = keras.Input((TIME, *SPATIAL[2], CHANNELS))
    hidden = tfrnn.keras.ConvLSTM2D(FILTERS, 2, dropout=0.2, seed=1)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(hidden)))
    model.compile("sgd", "mse")
    x, y = random_array(6, 4, TIME, *SPATIAL[2], CHANNELS), random_array(7, 4, 1)
    before = model.layers[1].get_weights()
    losses = model.fit(x, y, batch_size=3, epochs=2, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses))
    assert not np.allclose(before[0], model.layers[1].get_weights()[0])


def test_signature_is_keras_plus_unroll():
    for rank in (1, 2, 3):
        ours = list(inspect.signature(OURS[rank].__init__).parameters)
        theirs = list(inspect.signature(THEIRS[rank].__init__).parameters)
        assert [p for p in ours if p != "unroll"] == theirs
        defaults = {k: p.default for k, p in inspect.signature(THEIRS[rank].__init__).parameters.items()}
        assert {k: p.default for k, p in inspect.signature(OURS[rank].__init__).parameters.items() if k != "unroll"} == defaults


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: OURS[2](2, 3)(np.ones([2, 3, 5, 2], "float32")), r"must have rank 5, \[batch, timesteps, rows, cols, channels\], got shape \(2, 3, 5, 2\)"),
        (lambda: OURS[1](2, 3)(keras.Input((3, 5, 5, 2))), r"ConvLSTM1D\) must have rank 4.*got shape \(None, 3, 5, 5, 2\)"),
        (lambda: OURS[3](2, 3).compute_output_shape((None, 3, 5, 2)), r"must have rank 6"),
        (lambda: OURS[2](2, 3)(keras.Input((3, None, 5, 2))), r"need known rows, cols and channels.*\(None, 3, None, 5, 2\)"),
        (lambda: OURS[2](2, 7)(keras.Input((3, 5, 5, 2))), r"too small for kernel_size \(7, 7\)"),
        (lambda: OURS[2](2, 3, strides=2, dilation_rate=2), r"strides > 1 is not compatible with dilation_rate > 1"),
        (lambda: OURS[2](2, 3, padding="causal"), r"padding must be 'valid' or 'same'.*'causal'"),
        (lambda: OURS[2](2, 3, data_format="channels_first"), r"channels_first' is not supported"),
        (lambda: OURS[2](2, (3, 3, 3)), r"kernel_size must be a positive int or 2 positive ints, got \(3, 3, 3\)"),
        (lambda: OURS[2](0, 3), r"filters must be a positive int, got 0"),
        (lambda: OURS[2](2, 3, stateful=True).reset_state(states=[np.zeros([2, 3, 3, 2], "float32")] * 2), r"conv_lstm2d\w* \(ConvLSTM2D\) is not built yet, so the shape of its states, \[batch, rows, cols after the convolution, filters\], is unknown"),
        (lambda: OURS[2](2, 3, stateful=True)(keras.Input((3, 5, 5, 2))), r"stateful, so it needs a fixed batch size"),
    ],
)  # fmt: skip
def test_bad_arguments_and_inputs_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_keras3_model_exports_and_converts_to_conv_2d(tmp_path):
    from tfrnn import export, tflite

    inputs = keras.Input((None, *SPATIAL[2], CHANNELS))
    model = keras.Model(inputs, OURS[2](FILTERS, 3, padding="same", return_sequences=True, seed=1)(inputs))
    result = export.export_saved_model(model, str(tmp_path / "conv"))
    assert result.signatures == ["serving_default", "step", "initial_state"]
    assert max(result.max_abs_error.values()) <= 1e-5
    converted = tflite.convert(result.path)
    assert "CONV_2D" in converted.ops and "WHILE" in converted.ops, converted.ops
    x = random_array(8, 1, TIME, *SPATIAL[2], CHANNELS)  # the TFLite functions' batch is 1
    runner = tflite.interpreter(converted.model_content).get_signature_runner("serving_default")
    assert_close(runner(inputs=x)["outputs"], model(x), 1e-4, "LiteRT")


def test_keras_bidirectional_wraps_it_as_keras_own():
    x = random_array(10, BATCH, TIME, *SPATIAL[2], CHANNELS)
    ours = keras.layers.Bidirectional(OURS[2](FILTERS, 3, padding="same", return_sequences=True, jit_compile=False))
    theirs = keras.layers.Bidirectional(THEIRS[2](FILTERS, 3, padding="same", return_sequences=True))
    ours.build(x.shape)
    theirs.build(x.shape)
    rng = np.random.RandomState(11)
    theirs.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.3 for w in theirs.weights])
    ours.set_weights(theirs.get_weights())
    mask = tf.constant(random_mask(12, BATCH, TIME))
    assert_close(ours(x, mask=mask), theirs(x, mask=mask), 1e-5, "Bidirectional")


def test_regularizers_and_constraints_act_as_on_keras_layers():
    case = dict(rank=1, padding="valid", strides=1, dilation_rate=1, return_sequences=False,
                return_state=False, go_backwards=False)  # fmt: skip
    options = dict(kernel_regularizer="l2", recurrent_regularizer=keras.regularizers.L1(0.01),
                   bias_regularizer="l1", activity_regularizer="l2", bias_constraint="non_neg")  # fmt: skip
    ours, theirs = _pair(case, **options)
    x = random_array(13, BATCH, TIME, *SPATIAL[1], CHANNELS)
    ours(x), theirs(x)
    assert len(ours.losses) == len(theirs.losses) == 4
    assert_close(sorted(float(v) for v in ours.losses), sorted(float(v) for v in theirs.losses), 1e-5, "losses")
    assert ours.cell.bias.constraint is not None


def test_seed_seeds_the_initial_weights():
    shape = (None, None, *SPATIAL[1], CHANNELS)
    layers = [OURS[1](FILTERS, 2, seed=seed) for seed in (5, 5, 6)]
    for layer in layers:
        layer.build(shape)
    first, same, other = (layer.get_weights() for layer in layers)
    assert all(np.array_equal(a, b) for a, b in zip(first, same))
    assert not np.allclose(first[0], other[0]) and not np.allclose(first[1], other[1])
