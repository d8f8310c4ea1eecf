"""function_set: one set of traced functions for exports and conversions, one layout on disk."""

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import tfrnn
from tfrnn import export
from tfrnn._deploy import function_set
from tfrnn._deploy.signatures import ModelSignatures
from conftest import assert_close, random_array

BATCH, TIME, FEATURES, UNITS = 2, 5, 3, 4
GOLDEN = pathlib.Path(__file__).resolve().parent.parent / "saved_models"


def composite_lstms(function):
    """How many functions in `function`'s graph carry the converter's `api_implements` mark."""
    library = function.graph.as_graph_def().library.function
    return sum(f.attr["api_implements"].s.decode().startswith("lstm_") for f in library)


@pytest.fixture(scope="module")
def lstm():
    rnn = tfrnn.RNN(tfrnn.LSTMCell(UNITS, seed=1), return_sequences=True)
    rnn.build([None, None, FEATURES])
    return rnn, ModelSignatures(rnn, tf.TensorSpec([None, None, FEATURES]))


def test_an_export_and_a_conversion_trace_the_same_tflite_functions(lstm):
    rnn, signatures = lstm
    exported = function_set.trace(signatures, jit_compile=False, step=True, tflite_batch=BATCH, fuse_lstm=True).tflite
    converted = function_set.trace_tflite(signatures, batch=BATCH, step=True, fuse_lstm=True)
    assert sorted(exported.stored()) == sorted(converted.stored()) == [
        "probe", "serving_default", "serving_default_unfused", "step",
    ]
    inputs = random_array(0, BATCH, TIME, FEATURES)
    for functions in (exported, converted):
        assert composite_lstms(functions.serving_default) == 1 and functions.fusable
        # One rule for the step: traced unfused (it reads final states, which the fused op lacks).
        assert composite_lstms(functions.serving_default_unfused) == 0
        assert composite_lstms(functions.step) == 0
        for unfused in (False, True):
            assert_close(functions.serving(unfused)(tf.constant(inputs))["outputs"], rnn(inputs), 1e-5)
        states = functions.initial_state(tf.constant(BATCH))
        step = functions.step(tf.constant(inputs[:, 0]), states["state_0"], states["state_1"])
        assert_close(step["outputs"], rnn(inputs[:, :1])[:, 0], 1e-5, "step")
        assert functions.probe(tf.constant(inputs))["max_abs_cell_state"].shape == [1]


def test_without_fusion_there_is_no_composite_function_and_no_twin(lstm):
    _, signatures = lstm
    functions = function_set.trace_tflite(signatures, batch=BATCH, step=False, fuse_lstm=False)
    assert composite_lstms(functions.serving_default) == 0
    assert not functions.fusable and functions.serving(True) is functions.serving_default
    assert functions.step is None and functions.initial_state is None
    assert sorted(functions.stored()) == ["probe", "serving_default"]
    with pytest.raises(ValueError, match="no TFLite function for \\['step'\\]"):
        functions.for_conversion(["serving_default", "step"], unfused=False)


def test_the_saved_model_keeps_the_tflite_functions_under_their_names(tmp_path):
    rnn = tfrnn.RNN(tfrnn.GRUCell(UNITS, seed=2), return_sequences=True, stateful=True)
    rnn.build([BATCH, None, FEATURES])
    result = export.export_saved_model(rnn, tmp_path / "model")
    stored = ["probe", "reset_state", "serving_default", "step"]  # a GRU has no fused twin
    assert result.metadata["tflite_functions"] == stored
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    assert all(hasattr(loaded, function_set.STORED_PREFIX + name) for name in stored)
    functions = function_set.TFLiteFunctions.from_saved_model(loaded, result.metadata)
    assert sorted(functions.stored()) == stored and functions.batch == BATCH
    inputs = random_array(3, BATCH, TIME, FEATURES)
    assert_close(functions.serving_default(inputs=tf.constant(inputs))["outputs"], rnn(inputs), 1e-5)


@pytest.mark.parametrize("name, fusable", [("lstm", True), ("gru", False), ("stateful", True)])
def test_golden_exports_read_as_function_sets(name, fusable):
    path = GOLDEN / name / "savedmodel"
    metadata = json.loads((path / "assets.extra" / "tfrnn_export.json").read_text())
    functions = function_set.TFLiteFunctions.from_saved_model(tf.saved_model.load(str(path)), metadata)
    assert functions.fusable == fusable and functions.batch == metadata["tflite_batch_size"]
    assert sorted(functions.stored()) == metadata["tflite_functions"]
    assert functions.initial_state is not None and functions.step is not None
    assert (functions.reset_state is not None) == (name == "stateful")
