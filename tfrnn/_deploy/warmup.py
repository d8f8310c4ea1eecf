"""TF Serving warm-up requests (`assets.extra/tf_serving_warmup_requests`).

TF Serving reads, when a model loads with `--enable_model_warmup`, a TFRecord file of
`tensorflow.serving.PredictionLog` messages and runs each request once, so the first real
request does not pay for tracing and (with XLA) compiling. The messages are built with the
TF Serving project's own protos (`tensorflow-serving-api`, a dependency of tfrnn: it needs
nothing TensorFlow does not already install, and hand-written wire formats drift).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

WARMUP_FILE = "tf_serving_warmup_requests"


def prediction_log(model_name: str, signature_name: str, inputs: Mapping[str, np.ndarray]) -> bytes:
    """One serialized `PredictionLog` holding a Predict request."""
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name)
    )
    for name in sorted(inputs):
        request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(inputs[name])))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    return log.SerializeToString()


def write_warmup_file(
    path: str, model_name: str, requests: Sequence[tuple[str, Mapping[str, np.ndarray]]]
) -> None:
    """Writes `(signature_name, inputs)` requests as TF Serving's warm-up TFRecord file."""
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in requests:
            writer.write(prediction_log(model_name, signature_name, inputs))
