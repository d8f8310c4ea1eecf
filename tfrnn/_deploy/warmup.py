"""TF Serving warm-up requests (`assets.extra/tf_serving_warmup_requests`) without its protos.

TF Serving reads, when a model loads with `--enable_model_warmup`, a TFRecord file of
`tensorflow.serving.PredictionLog` messages and runs each request once, so the first real
request does not pay for tracing and (with XLA) compiling. The message types live in the
`tensorflow-serving-api` package, which pins TensorFlow versions of its own; the few fields a
Predict warm-up needs are written here directly in protobuf's wire format:

    PredictionLog  { PredictLog predict_log = 6; }
    PredictLog     { PredictRequest request = 1; }
    PredictRequest { ModelSpec model_spec = 1; map<string, TensorProto> inputs = 2; }
    ModelSpec      { string name = 1; string signature_name = 3; }

(field numbers from tensorflow_serving/apis/{prediction_log,predict,model}.proto).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

WARMUP_FILE = "tf_serving_warmup_requests"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    """A wire-type-2 field (string, bytes, sub-message, map entry)."""
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def prediction_log(model_name: str, signature_name: str, inputs: Mapping[str, np.ndarray]) -> bytes:
    """One serialized `PredictionLog` holding a Predict request."""
    model_spec = _length_delimited(1, model_name.encode()) + _length_delimited(
        3, signature_name.encode()
    )
    request = _length_delimited(1, model_spec)
    for name in sorted(inputs):
        tensor = tf.make_tensor_proto(np.asarray(inputs[name])).SerializeToString()
        entry = _length_delimited(1, name.encode()) + _length_delimited(2, tensor)
        request += _length_delimited(2, entry)
    predict_log = _length_delimited(1, request)
    return _length_delimited(6, predict_log)


def write_warmup_file(
    path: str, model_name: str, requests: Sequence[tuple[str, Mapping[str, np.ndarray]]]
) -> None:
    """Writes `(signature_name, inputs)` requests as TF Serving's warm-up TFRecord file."""
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in requests:
            writer.write(prediction_log(model_name, signature_name, inputs))
