"""tracing.scope: what an export asks of the RNNs it traces, and streaming with explicit states."""

import numpy as np
import pytest
import tensorflow as tf

import tfrnn
from tfrnn import tracing
from conftest import assert_close, random_array


def test_scopes_nest_and_restore():
    outer = tracing.TraceOptions(jit_compile=False)
    inner = tracing.TraceOptions(tflite=True)
    assert tracing.current_options() == tracing.TraceOptions()
    with tracing.scope(outer):
        assert tracing.current_options() is outer
        with tracing.scope(inner, stream=tracing.StreamCapture()):
            assert tracing.current_options() is inner
            assert tracing.current_stream() is not None
        assert tracing.current_options() is outer and tracing.current_stream() is None
    assert tracing.current_options() == tracing.TraceOptions()
    with pytest.raises(RuntimeError):
        with tracing.scope(outer):
            raise RuntimeError("inside")
    assert tracing.current_options() == tracing.TraceOptions()


def _xla_functions(concrete):
    """Names of the functions in a trace that are marked for XLA compilation."""
    library = concrete.graph.as_graph_def().library.function
    return [f.signature.name for f in library if f.attr["_XlaMustCompile"].b]


def test_the_jit_compile_override_applies_to_every_rnn():
    rnn = tfrnn.RNN(tfrnn.GRUCell(3), jit_compile=True)
    rnn.build([None, None, 2])
    spec = tf.TensorSpec([None, None, 2])
    assert _xla_functions(tf.function(lambda x: rnn(x)).get_concrete_function(spec))
    with tracing.scope(tracing.TraceOptions(jit_compile=False)):
        plain = tf.function(lambda x: rnn(x)).get_concrete_function(spec)
    assert not _xla_functions(plain)


def test_streaming_feeds_explicit_states_and_leaves_stateful_variables_alone():
    rnn = tfrnn.RNN(tfrnn.LSTMCell(3, seed=1), stateful=True, return_state=True)
    inputs = random_array(0, 2, 4, 2)
    rnn(inputs)
    before = [v.numpy() for v in rnn.states]
    states = [tf.constant(random_array(i, 2, 3)) for i in (1, 2)]
    capture = tracing.StreamCapture([states])
    with tracing.scope(stream=capture):
        output, h, c = rnn(inputs)
    reference = tfrnn.RNN(rnn.cell, return_state=True, jit_compile=False)
    expected = reference(inputs, initial_state=states)
    assert_close(output, expected[0], 1e-5, "output")
    assert_close(capture.final_states[1], expected[2], 1e-5, "c")
    for variable, value in zip(rnn.states, before):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_a_model_calling_more_rnns_than_recorded_is_an_error():
    rnn = tfrnn.RNN(tfrnn.SimpleRNNCell(2))
    capture = tracing.StreamCapture([[tf.zeros([1, 2])]])
    with tracing.scope(stream=capture):
        rnn(tf.zeros([1, 3, 2]))
        with pytest.raises(ValueError, match="called 2 RNNs while streaming, but 1 were found"):
            rnn(tf.zeros([1, 3, 2]))
