"""tfrnn.tf_keras.saving: files written with tf-keras' namesakes load into the same model built
from tfrnn's layers with identical outputs, and back; checkpoint keys and variable names are
tf-keras'; tfrnn 0.1.0's checkpoints still load (its `.keras`/SavedModel: tests/test_golden.py)."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfrnn
from conftest import assert_close, random_array
from keras_twins import MinimalRNNCell

BATCH, TIME, FEATURES = 2, 5, 3
FORMATS = ("checkpoint", "h5", "keras", "savedmodel")
GOLDEN_0_1 = pathlib.Path(__file__).resolve().parent.parent / "saved_models/releases/tf_keras_v0_1"


def build(layers, stateful=False, masking=True):
    """The same architecture from `tf_keras.layers` or `tfrnn.tf_keras`: every namesake, the
    generic RNN over tfrnn's (tf-keras') cells, over a tf-keras cell, Bidirectional, a mask."""
    tf_keras.backend.clear_session()  # layer names without this process' earlier counters
    ours = layers is tfrnn.tf_keras
    cell = tfrnn if ours else tf_keras.layers
    x = tf_keras.Input((TIME, FEATURES), batch_size=BATCH)
    h = tf_keras.layers.Masking()(x) if masking else x
    h = layers.LSTM(4, return_sequences=True, name="encoder")(h)
    h = layers.RNN([cell.SimpleRNNCell(3), cell.GRUCell(2)], return_sequences=True, name="stack")(h)
    h = layers.RNN(MinimalRNNCell(3), return_sequences=True, name="minimal")(h)
    h = tf_keras.layers.Bidirectional(layers.GRU(2, return_sequences=True, reset_after=False))(h)
    h = layers.SimpleRNN(3, stateful=stateful, name="last")(h)
    return tf_keras.Model(x, tf_keras.layers.Dense(2, name="head")(h))


def inputs():
    values = random_array(1, BATCH, TIME, FEATURES)
    values[0, 3:] = 0.0  # masked steps
    return values


def randomize(model):
    model.set_weights([random_array(10 + i, *w.shape) for i, w in enumerate(model.get_weights())])


def save(model, fmt, directory):
    """Writes `model` in `fmt`; returns what `load_weights` reads."""
    if fmt == "checkpoint":
        model.save_weights(str(directory / "ckpt"))
        return str(directory / "ckpt")
    if fmt == "h5":
        model.save_weights(str(directory / "weights.h5"))
        return str(directory / "weights.h5")
    if fmt == "keras":
        model.save(str(directory / "model.keras"))
        return str(directory / "model.keras")
    model.save(str(directory / "savedmodel"), save_format="tf")
    return str(directory / "savedmodel" / "variables" / "variables")


def names(model):
    return [w.name for w in model.weights]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Both directions' source models (random weights), their outputs, and every format."""
    result = {}
    for source in (tf_keras.layers, tfrnn.tf_keras):
        model = build(source)
        randomize(model)
        directory = tmp_path_factory.mktemp(source.__name__)
        files = {fmt: save(model, fmt, directory) for fmt in FORMATS}
        result[source.__name__] = dict(model=model, outputs=model.predict_on_batch(inputs()), files=files)
    return result


CASES = [(a, b, fmt) for a, b in ((tf_keras.layers, tfrnn.tf_keras), (tfrnn.tf_keras, tf_keras.layers)) for fmt in FORMATS]


@pytest.mark.parametrize("source, target, fmt", CASES, ids=[f"{a.__name__}-to-{b.__name__}-{f}" for a, b, f in CASES])
def test_weights_load_both_ways_with_identical_outputs(saved, source, target, fmt):
    entry = saved[source.__name__]
    model = build(target)
    before = model.predict_on_batch(inputs())
    model.load_weights(entry["files"][fmt])
    assert_all_weights_equal(model, entry["model"])
    # The same weights in the other implementation: equal to float32 rounding.
    assert_close(model.predict_on_batch(inputs()), entry["outputs"], 1e-5, f"{fmt} loaded")
    assert float(np.max(np.abs(before - entry["outputs"]))) > 1e-3  # the load changed something
    assert names(model) == names(entry["model"])


def test_variable_names_and_checkpoint_keys_are_tf_keras(saved, tmp_path):
    ours, theirs = saved["tfrnn.tf_keras"], saved["tf_keras.layers"]
    assert names(ours["model"]) == names(theirs["model"])
    assert ours["model"].layers[2].weights[0].name == "encoder/lstm_cell/kernel:0"
    keys = {name: sorted(k for k, _ in tf.train.list_variables(entry["files"]["checkpoint"]))
            for name, entry in saved.items()}
    assert keys["tfrnn.tf_keras"] == keys["tf_keras.layers"]
    assert "layer_with_weights-0/cell/kernel/.ATTRIBUTES/VARIABLE_VALUE" in keys["tfrnn.tf_keras"]
    assert "layer_with_weights-1/cell/cells/1/bias/.ATTRIBUTES/VARIABLE_VALUE" in keys["tfrnn.tf_keras"]
    # Every value is bound both ways: nothing is left over, nothing goes unrestored.
    for source, target in (("tf_keras.layers", tfrnn.tf_keras), ("tfrnn.tf_keras", tf_keras.layers)):
        build(target).load_weights(saved[source]["files"]["checkpoint"]).assert_consumed()


def test_a_checkpoint_restores_before_the_model_is_built(tmp_path):
    """tf-keras' deferred restoration: load_weights into a model without input shapes, then
    call it; the weights arrive as the layers create them (tf-keras itself as the check)."""
    values = random_array(3, BATCH, TIME, FEATURES)
    source = tf_keras.Sequential([tf_keras.layers.LSTM(4, return_sequences=True)])
    source.build((None, None, FEATURES))
    randomize(source)
    source.save_weights(str(tmp_path / "ckpt"))
    for layers in (tf_keras.layers, tfrnn.tf_keras):
        model = tf_keras.Sequential([layers.LSTM(4, return_sequences=True)])
        model.load_weights(str(tmp_path / "ckpt"))
        assert_close(model(values), source(values), 1e-6, layers.__name__)


def test_stateful_states_are_saved_beside_tf_keras_keys(tmp_path):
    """tfrnn keeps a stateful layer's states in checkpoints (`states/0`) and `.keras` files
    (`state_store`), where tf-keras keeps none: each side loads the other's files, the states
    staying as they were where a file has none."""
    ours, theirs = build(tfrnn.tf_keras, stateful=True), build(tf_keras.layers, stateful=True)
    randomize(theirs)
    ours.set_weights(theirs.get_weights())
    assert_close(ours.predict_on_batch(inputs()), theirs.predict_on_batch(inputs()), 1e-5, "stateful")
    states = ours.get_layer("last").states[0].numpy()
    assert float(np.max(np.abs(states))) > 0
    (tmp_path / "ours").mkdir()
    theirs_checkpoint = save(theirs, "checkpoint", tmp_path)
    extra = {k for k, _ in tf.train.list_variables(save(ours, "checkpoint", tmp_path / "ours"))}
    extra -= {k for k, _ in tf.train.list_variables(theirs_checkpoint)}
    assert extra == {"layer_with_weights-4/states/0/.ATTRIBUTES/VARIABLE_VALUE"}
    for fmt in ("checkpoint", "keras"):
        path = save(ours, fmt, tmp_path / "ours")
        fresh = build(tfrnn.tf_keras, stateful=True)
        fresh.load_weights(path)
        assert_close(fresh.get_layer("last").states[0], states, 0.0, f"states from {fmt}")
        keras_model = build(tf_keras.layers, stateful=True)
        keras_model.load_weights(path)  # no states there for tf-keras: its stay zeros
        assert_close(keras_model.get_layer("last").states[0], np.zeros_like(states), 0.0, fmt)
        assert_all_weights_equal(keras_model, ours)
        fresh = build(tfrnn.tf_keras, stateful=True)
        fresh.load_weights(save(theirs, fmt, tmp_path))
        assert_all_weights_equal(fresh, theirs)
        assert_close(fresh.get_layer("last").states[0], np.zeros_like(states), 0.0, f"tf-keras {fmt}")


def assert_all_weights_equal(a, b):
    for index, (x, y) in enumerate(zip(a.get_weights(), b.get_weights(), strict=True)):
        assert_close(x, y, 0.0, f"weight {index}")


def test_checkpoints_written_by_release_0_1_still_load():
    """The variables of the 0.1.0 golden SavedModel are a TF checkpoint of 0.1.0's object
    graph (`_rnn/cell/kernel`, `_rnn/_state_variables/...`): load_weights binds all of it,
    the stored states included, into today's layers."""
    x = tf_keras.Input((None,), dtype="int32", batch_size=2, name="tokens")
    h = tf_keras.layers.Embedding(10, 4, mask_zero=True, name="embedding")(x)
    h = tf_keras.layers.Bidirectional(tfrnn.tf_keras.LSTM(3, return_sequences=True, seed=1), name="bidirectional")(h)
    h = tfrnn.tf_keras.RNN([tfrnn.SimpleRNNCell(4, seed=2), tfrnn.GRUCell(3, seed=3)], return_sequences=True, name="stacked")(h)
    h = tfrnn.tf_keras.SimpleRNN(3, return_sequences=True, seed=4, name="simple_rnn")(h)
    h = tfrnn.tf_keras.GRU(5, stateful=True, reset_after=False, seed=5, name="gru")(h)
    model = tf_keras.Model(x, tf_keras.layers.Dense(2, name="dense")(h))
    keys = [k for k, _ in tf.train.list_variables(str(GOLDEN_0_1 / "savedmodel/variables/variables"))]
    assert "layer_with_weights-4/_rnn/_state_variables/state_variables/0/.ATTRIBUTES/VARIABLE_VALUE" in keys
    model.load_weights(str(GOLDEN_0_1 / "savedmodel/variables/variables")).expect_partial()
    io = np.load(GOLDEN_0_1 / "io.npz")
    assert_close(model.predict_on_batch(io["inputs"]), io["expected"], 1e-6, "0.1.0 checkpoint")


LOAD_WITHOUT_TFRNN = textwrap.dedent(
    """
    import importlib.abc, json, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] == 'tfrnn':
                raise ImportError('tfrnn is blocked')
    sys.meta_path.insert(0, Block())
    import numpy as np, tf_keras
    data = np.load(sys.argv[2])
    model = tf_keras.models.load_model(sys.argv[1])
    print(json.dumps(float(np.abs(model.predict_on_batch(data["inputs"]) - data["expected"]).max())))
    """
)


def test_a_saved_model_of_tfrnn_layers_loads_in_tf_keras_without_tfrnn(tmp_path):
    """tf-keras revives a SavedModel of layer classes it does not know from their saved
    functions (which it traced without masks: the model has none)."""
    model = build(tfrnn.tf_keras, masking=False)
    randomize(model)
    model.save(str(tmp_path / "savedmodel"), save_format="tf")
    np.savez(tmp_path / "io.npz", inputs=inputs(), expected=model.predict_on_batch(inputs()))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_TFRNN, str(tmp_path / "savedmodel"), str(tmp_path / "io.npz")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) <= 1e-6
