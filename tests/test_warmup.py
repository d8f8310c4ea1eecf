"""Warm-up records, parsed with TF Serving's own protos (`tensorflow_serving.apis`)."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

import tfrnn
import tfrnn.export
from tfrnn._deploy import warmup


def _requests(path):
    records = tf.data.TFRecordDataset(path).as_numpy_iterator()
    return [prediction_log_pb2.PredictionLog.FromString(r).predict_log.request for r in records]


def test_records_parse_as_prediction_logs(tmp_path):
    path = str(tmp_path / warmup.WARMUP_FILE)
    inputs = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    state = np.zeros([1, 4], np.float32)
    ids = np.array([[1, 0]], np.int32)
    warmup.write_warmup_file(
        path, "my_model",
        [("serving_default", {"inputs": inputs, "ids": ids}), ("step", {"inputs": inputs[:, 0], "state_0": state})],
    )
    first, second = _requests(path)
    assert (first.model_spec.name, first.model_spec.signature_name) == ("my_model", "serving_default")
    np.testing.assert_array_equal(tf.make_ndarray(first.inputs["inputs"]), inputs)
    assert tf.make_ndarray(first.inputs["ids"]).dtype == np.int32
    assert second.model_spec.signature_name == "step"
    assert sorted(second.inputs) == ["inputs", "state_0"]
    np.testing.assert_array_equal(tf.make_ndarray(second.inputs["state_0"]), state)


class _SequenceAndSide(tf.Module):
    """Two inputs: a sequence through an LSTM, and side features added to its last output."""

    def __init__(self):
        self.rnn = tfrnn.RNN(tfrnn.LSTMCell(3, seed=0))

    def __call__(self, inputs):
        return {"head": self.rnn(inputs["sequence"]) + inputs["side"]}


@pytest.mark.parametrize("jit_compile", [False, True])
def test_each_request_matches_its_signature_and_runs(tmp_path, jit_compile):
    model = _SequenceAndSide()
    spec = {"sequence": tf.TensorSpec([None, None, 2]), "side": tf.TensorSpec([None, 3])}
    export_dir = str(tmp_path / "model")
    tfrnn.export.export_saved_model(model, export_dir, input_spec=spec, warmup=True, jit_compile=jit_compile,
                                    tflite_batch_size=None, model_name="m")
    loaded = tf.saved_model.load(export_dir)
    requests = _requests(f"{export_dir}/assets.extra/{warmup.WARMUP_FILE}")
    assert [r.model_spec.signature_name for r in requests] == ["serving_default", "step"]
    for request in requests:
        function = loaded.signatures[request.model_spec.signature_name]
        specs = function.structured_input_signature[1]
        feed = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        assert sorted(feed) == sorted(specs)
        for name, value in feed.items():
            assert specs[name].shape.is_compatible_with(value.shape), (name, value.shape, specs[name])
            assert value.dtype == specs[name].dtype.as_numpy_dtype
        outputs = function(**{k: tf.constant(v) for k, v in feed.items()})
        assert all(np.isfinite(v.numpy()).all() for v in outputs.values())
    step = {k: tf.make_ndarray(v) for k, v in requests[1].inputs.items()}
    assert step["side"].shape == (2, 3) and step["sequence"].shape == (2, 2)  # side whole, sequence one step
