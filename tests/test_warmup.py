"""Warm-up records, parsed with the PredictionLog schema declared independently of the encoder."""

import numpy as np
import tensorflow as tf
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from tensorflow.core.framework import tensor_pb2

from tfrnn._deploy import warmup


def _prediction_log_class():
    """The few messages of tensorflow_serving/apis/{prediction_log,predict,model}.proto used."""
    file = descriptor_pb2.FileDescriptorProto(name="warmup_test.proto", package="test", syntax="proto3")
    file.dependency.append("tensorflow/core/framework/tensor.proto")
    def message(name, fields, nested=()):
        proto = file.message_type.add(name=name)
        for nested_proto in nested:
            proto.nested_type.add().CopyFrom(nested_proto)
        for field_name, number, kind, type_name, label in fields:
            proto.field.add(name=field_name, number=number, type=kind, type_name=type_name, label=label)
        return proto
    F = descriptor_pb2.FieldDescriptorProto
    optional, repeated = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message("ModelSpec", [("name", 1, F.TYPE_STRING, None, optional), ("signature_name", 3, F.TYPE_STRING, None, optional)])
    entry = descriptor_pb2.DescriptorProto(name="InputsEntry", options=descriptor_pb2.MessageOptions(map_entry=True))
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=optional)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, type_name=".tensorflow.TensorProto", label=optional)
    message("PredictRequest", [
        ("model_spec", 1, F.TYPE_MESSAGE, ".test.ModelSpec", optional),
        ("inputs", 2, F.TYPE_MESSAGE, ".test.PredictRequest.InputsEntry", repeated),
    ], nested=[entry])
    message("PredictLog", [("request", 1, F.TYPE_MESSAGE, ".test.PredictRequest", optional)])
    message("PredictionLog", [("predict_log", 6, F.TYPE_MESSAGE, ".test.PredictLog", optional)])
    pool = descriptor_pool.DescriptorPool()
    tensor_file = descriptor_pb2.FileDescriptorProto()
    tensor_pb2.DESCRIPTOR.CopyToProto(tensor_file)
    for dependency in tensor_pb2.DESCRIPTOR.dependencies:
        proto = descriptor_pb2.FileDescriptorProto()
        dependency.CopyToProto(proto)
        for sub in dependency.dependencies:
            sub_proto = descriptor_pb2.FileDescriptorProto()
            sub.CopyToProto(sub_proto)
            pool.Add(sub_proto)
        pool.Add(proto)
    pool.Add(tensor_file)
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("test.PredictionLog"))


def test_records_parse_as_prediction_logs(tmp_path):
    path = str(tmp_path / warmup.WARMUP_FILE)
    inputs = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    state = np.zeros([1, 4], np.float32)
    warmup.write_warmup_file(
        path, "my_model", [("serving_default", {"inputs": inputs}), ("step", {"inputs": inputs[:, 0], "state_0": state})]
    )
    records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    assert len(records) == 2
    PredictionLog = _prediction_log_class()
    first, second = (PredictionLog.FromString(r).predict_log.request for r in records)
    assert first.model_spec.name == "my_model"
    assert first.model_spec.signature_name == "serving_default"
    np.testing.assert_array_equal(tf.make_ndarray(first.inputs["inputs"]), inputs)
    assert second.model_spec.signature_name == "step"
    assert sorted(second.inputs) == ["inputs", "state_0"]
    np.testing.assert_array_equal(tf.make_ndarray(second.inputs["state_0"]), state)


def test_varints_of_large_lengths():
    assert warmup._varint(1) == b"\x01"
    assert warmup._varint(300) == b"\xac\x02"
    assert warmup._varint(2**21) == b"\x80\x80\x80\x01"
