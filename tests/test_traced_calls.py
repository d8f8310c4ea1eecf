"""choose_mode: how an RNN call runs under its own options and under an export's."""

import pytest
import tensorflow as tf

import tfrnn
from tfrnn import tracing, traced_calls
from matrix import all_pairs, case_id

MATRIX = all_pairs(
    {
        "cell": ("lstm", "lstm_relu", "gru"),
        "mask": (False, True),
        "stateful": (False, True),
        "return_state": (False, True),
        "streaming": (False, True),
        "batch": (1, None),
        "fuse_lstm": (False, True),
    }
)


def _cell(kind):
    return {"lstm": tfrnn.LSTMCell(2), "lstm_relu": tfrnn.LSTMCell(2, activation="relu"), "gru": tfrnn.GRUCell(2)}[kind]


@pytest.mark.parametrize("case", MATRIX, ids=case_id)
def test_only_lstms_whose_states_nobody_reads_fuse(case):
    rnn = tfrnn.RNN(_cell(case["cell"]), stateful=case["stateful"], return_state=case["return_state"])
    inputs = tf.zeros([case["batch"] or 1, 3, 2])
    if case["batch"] is None:
        inputs = tf.TensorSpec([None, 3, 2])
    mask = tf.ones([1, 3], tf.bool) if case["mask"] else None
    expected_fused = (
        case["fuse_lstm"] and case["cell"] == "lstm" and not case["mask"] and not case["stateful"]
        and not case["return_state"] and not case["streaming"] and case["batch"] is not None
    )
    with tracing.scope(tracing.TraceOptions(tflite=True, fuse_lstm=case["fuse_lstm"])):
        mode = traced_calls.choose_mode(rnn, inputs, mask, case["streaming"])
    assert mode.tflite and not mode.jit_compile
    assert mode.fuse_lstm is expected_fused
    assert mode.write_back is not case["streaming"]
    with tracing.scope(tracing.TraceOptions(tflite=True, probe_cell_state=True)):
        probe = traced_calls.choose_mode(rnn, inputs, mask, case["streaming"])
    assert not probe.fuse_lstm and not probe.write_back  # a probe measures, it moves no state


@pytest.mark.parametrize("own, override, expected", [(True, None, True), (False, None, False), (True, False, False), (False, True, True)])
def test_an_exports_jit_compile_overrides_the_rnns(own, override, expected):
    rnn = tfrnn.RNN(tfrnn.GRUCell(2), jit_compile=own)
    with tracing.scope(tracing.TraceOptions(jit_compile=override)):
        mode = traced_calls.choose_mode(rnn, tf.zeros([1, 3, 2]), None, False)
    assert mode == traced_calls.Mode(expected)


def test_one_traced_function_per_mode():
    calls = []
    functions = traced_calls.FunctionsByMode(lambda mode, *args: calls.append(mode), reduce_retracing=True)
    first, second = traced_calls.Mode(True), traced_calls.Mode(False, tflite=True)
    assert functions(first) is functions(first)
    assert functions(first) is not functions(second)
    assert not functions(second).run._jit_compile  # TFLite functions are never XLA-compiled
