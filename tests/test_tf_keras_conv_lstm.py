"""tfrnn.tf_keras.ConvLSTM1D/2D/3D against tf_keras.layers.ConvLSTM*D holding the same weights."""

import inspect

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfrnn
from conftest import assert_close, random_array, random_mask
import conv_lstm_twins as twins
from conv_lstm_twins import BATCH, CHANNELS, FILTERS, SPATIAL, TIME
from matrix import case_id

OURS = {1: tfrnn.tf_keras.ConvLSTM1D, 2: tfrnn.tf_keras.ConvLSTM2D, 3: tfrnn.tf_keras.ConvLSTM3D}
THEIRS = {1: tf_keras.layers.ConvLSTM1D, 2: tf_keras.layers.ConvLSTM2D, 3: tf_keras.layers.ConvLSTM3D}
# tf-keras refuses unroll for ConvLSTMs; ours takes it (the loop is the same). Both keep
# tf-keras' default recurrent_activation, hard_sigmoid.
MATRIX = twins.matrix()


def _pair(case, **options):
    return twins.make_pair(OURS[case["rank"]], THEIRS[case["rank"]], case, **options)


@pytest.mark.parametrize("case", MATRIX, ids=case_id)
def test_matches_tf_keras(case):
    twins.check_matches(*_pair(case), case)


def test_xla_compiled_loop_and_stateful_calls_match_tf_keras():
    case = dict(rank=3, padding="same", strides=1, dilation_rate=1, return_sequences=False,
                return_state=True, go_backwards=True, jit=True)  # fmt: skip
    twins.check_stateful_calls(*_pair(case, stateful=True), case["rank"], "reset_states")


@pytest.fixture(scope="module")
def model_pair():
    """Two-layer models (ConvLSTM2D then ConvLSTM1D over rows), ours and tf-keras', same weights."""

    def model(conv2d, conv1d, **extra):
        inputs = tf_keras.Input((TIME, *SPATIAL[2], CHANNELS), batch_size=BATCH)
        hidden = conv2d(FILTERS, 3, padding="same", return_sequences=True, **extra)(inputs)
        hidden = tf_keras.layers.Reshape((TIME, SPATIAL[2][0], SPATIAL[2][1] * FILTERS))(hidden)
        return tf_keras.Model(inputs, conv1d(FILTERS, 2, strides=2, **extra)(hidden))

    ours = model(tfrnn.tf_keras.ConvLSTM2D, tfrnn.tf_keras.ConvLSTM1D, jit_compile=False)
    theirs = model(tf_keras.layers.ConvLSTM2D, tf_keras.layers.ConvLSTM1D)
    rng = np.random.RandomState(4)
    theirs.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.3 for w in theirs.weights])
    return ours, theirs, random_array(5, BATCH, TIME, *SPATIAL[2], CHANNELS)


@pytest.mark.parametrize("suffix", ["h5", "tf"])
def test_symbolic_shapes_and_weight_files_both_ways(model_pair, tmp_path, suffix):
    ours, theirs, x = model_pair
    assert ours.output_shape == theirs.output_shape == (BATCH, 2, FILTERS)
    assert [w.shape for w in ours.weights] == [w.shape for w in theirs.weights]
    # Named as tfrnn's other namesakes, with the cell; tf-keras' ConvLSTMs leave it out.
    assert [w.name.split("/", 1)[1] for w in ours.layers[1].weights] == [
        "conv_lstm_cell/kernel:0", "conv_lstm_cell/recurrent_kernel:0", "conv_lstm_cell/bias:0",
    ]  # fmt: skip
    assert [w.name.split("/", 1)[1] for w in theirs.layers[1].weights] == ["kernel:0", "recurrent_kernel:0", "bias:0"]
    ours.set_weights([np.zeros(w.shape, np.float32) for w in ours.weights])
    path = str(tmp_path / f"theirs.{suffix}" if suffix == "h5" else tmp_path / "theirs")
    theirs.save_weights(path)
    status = ours.load_weights(path)
    if suffix == "tf":
        status.assert_consumed()  # the same checkpoint keys
    assert_close(ours(x), theirs(x), 1e-5, f"ours from tf-keras' {suffix} file")
    copy = tf_keras.models.clone_model(theirs)
    path = str(tmp_path / f"ours.{suffix}" if suffix == "h5" else tmp_path / "ours")
    ours.save_weights(path)
    status = copy.load_weights(path)
    if suffix == "tf":
        status.assert_consumed()
    assert_close(copy(x), theirs(x), 1e-5, f"tf-keras' from our {suffix} file")


def test_config_and_model_files_round_trip(model_pair, tmp_path):
    ours, theirs, x = model_pair
    ours.set_weights(theirs.get_weights())
    layer = ours.layers[1]
    config = layer.get_config()
    assert set(theirs.layers[1].get_config()) <= set(config)
    assert config["recurrent_activation"] == "hard_sigmoid" and config["jit_compile"] is False
    assert type(layer).from_config(config).get_config() == config
    for suffix in ("keras", "h5"):
        ours.save(tmp_path / f"m.{suffix}")
        loaded = tf_keras.models.load_model(tmp_path / f"m.{suffix}")
        assert type(loaded.layers[1]) is tfrnn.tf_keras.ConvLSTM2D
        assert_close(loaded.predict(x, verbose=0), theirs.predict(x, verbose=0), 1e-5, suffix)


def test_fit_trains_a_model_with_dropout():
    inputs = tf_keras.Input((TIME, *SPATIAL[2], CHANNELS))
    hidden = tfrnn.tf_keras.ConvLSTM2D(FILTERS, 2, dropout=0.2, seed=1)(inputs)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(1)(tf_keras.layers.Flatten()(hidden)))
    model.compile("sgd", "mse")
    x, y = random_array(6, 4, TIME, *SPATIAL[2], CHANNELS), random_array(7, 4, 1)
    before = model.layers[1].get_weights()
    losses = model.fit(x, y, batch_size=3, epochs=2, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses))
    assert not np.allclose(before[0], model.layers[1].get_weights()[0])


def test_signature_is_tf_keras_plus_unroll_and_seed():
    for rank in (1, 2, 3):
        ours = inspect.signature(OURS[rank].__init__).parameters
        theirs = inspect.signature(THEIRS[rank].__init__).parameters
        assert [p for p in ours if p not in ("unroll", "seed")] == list(theirs)
        assert {k: p.default for k, p in ours.items() if k not in ("unroll", "seed")} == {
            k: p.default for k, p in theirs.items()
        }
    with pytest.raises(TypeError, match="Unrolling"):
        THEIRS[2](2, 3, unroll=True)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: OURS[2](2, 3)(tf.ones([2, 3, 5, 2])), r"must have rank 5, \[batch, timesteps, rows, cols, channels\], got shape \(2, 3, 5, 2\)"),
        (lambda: OURS[1](2, 3)(tf_keras.Input((3, 5, 5, 2))), r"ConvLSTM1D\) must have rank 4.*got shape \(None, 3, 5, 5, 2\)"),
        (lambda: OURS[3](2, 3).compute_output_shape((None, 3, 5, 2)), r"must have rank 6"),
        (lambda: OURS[2](2, 3)(tf_keras.Input((3, None, 5, 2))), r"need known rows, cols and channels.*\(None, 3, None, 5, 2\)"),
        (lambda: OURS[2](2, 7)(tf_keras.Input((3, 5, 5, 2))), r"too small for kernel_size \(7, 7\)"),
        (lambda: OURS[2](2, 3, strides=2, dilation_rate=2), r"strides > 1 is not compatible with dilation_rate > 1"),
        (lambda: OURS[2](2, 3, padding="causal"), r"padding must be 'valid' or 'same'.*'causal'"),
        (lambda: OURS[2](2, 3, data_format="channels_first"), r"channels_first' is not supported"),
        (lambda: OURS[2](2, (3, 3, 3)), r"kernel_size must be a positive int or 2 positive ints, got \(3, 3, 3\)"),
        (lambda: OURS[2](0, 3), r"filters must be a positive int, got 0"),
        (lambda: OURS[2](2, 3, stateful=True).reset_state(states=[np.zeros([2, 3, 3, 2], "float32")] * 2), r"conv_lstm2d\w* \(ConvLSTM2D\) is not built yet, so the shape of its states, \[batch, rows, cols after the convolution, filters\], is unknown"),
        (lambda: OURS[2](2, 3, stateful=True)(tf_keras.Input((3, 5, 5, 2))), r"stateful, so it needs a fixed batch size"),
    ],
)  # fmt: skip
def test_bad_arguments_and_inputs_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_tf_keras_bidirectional_wraps_it_and_zeroes_masked_steps():
    """As tf-keras' Bidirectional asks (zero_output_for_mask), which its ConvRNN ignores."""
    x = random_array(10, BATCH, TIME, *SPATIAL[2], CHANNELS)
    ours = tf_keras.layers.Bidirectional(OURS[2](FILTERS, 3, padding="same", return_sequences=True, jit_compile=False))
    theirs = tf_keras.layers.Bidirectional(THEIRS[2](FILTERS, 3, padding="same", return_sequences=True))
    ours.build(x.shape)
    theirs.build(x.shape)
    rng = np.random.RandomState(11)
    theirs.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.3 for w in theirs.weights])
    ours.set_weights(theirs.get_weights())
    mask = random_mask(12, BATCH, TIME)
    expected = np.where(mask[:, :, None, None, None], theirs(x, mask=tf.constant(mask)), 0.0)
    assert_close(ours(x, mask=tf.constant(mask)), expected, 1e-5, "Bidirectional")


def test_regularizers_and_constraints_act_as_on_tf_keras_layers():
    case = dict(rank=1, padding="valid", strides=1, dilation_rate=1, return_sequences=False,
                return_state=False, go_backwards=False)  # fmt: skip
    options = dict(kernel_regularizer="l2", recurrent_regularizer=tf_keras.regularizers.L1(0.01),
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
