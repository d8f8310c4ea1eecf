"""trace_context: what code above the core asks of the RNNs it traces."""

import numpy as np
import pytest
import tensorflow as tf

import tfrnn
from tfrnn._core import trace_context
from tfrnn._deploy.signatures import StreamCapture
from conftest import assert_close, random_array

DEFAULT = trace_context.TraceContext()


def test_scopes_nest_keep_what_they_do_not_change_and_restore():
    assert trace_context.current() == DEFAULT
    with trace_context.scope(jit_compile=False) as outer:
        assert trace_context.current() is outer and outer.jit_compile is False
        capture = StreamCapture()
        with trace_context.scope(builtin_only=True, stream=capture) as inner:
            assert inner.jit_compile is False and inner.builtin_only and inner.stream is capture
        assert trace_context.current() is outer and outer.stream is None
    assert trace_context.current() == DEFAULT
    with pytest.raises(RuntimeError):
        with trace_context.scope(jit_compile=True):
            raise RuntimeError("inside")
    assert trace_context.current() == DEFAULT
    with pytest.raises(TypeError):
        with trace_context.scope(no_such_field=True):
            pass


def test_the_observer_sees_every_call_with_its_final_states():
    records = []
    lstm = tfrnn.RNN(tfrnn.LSTMCell(3, seed=1), return_state=True)
    gru = tfrnn.RNN(tfrnn.GRUCell(2, seed=2))
    inputs = random_array(0, 2, 4, 2)
    with trace_context.scope(observer=records.append):
        _, h, c = lstm(inputs)
        gru(inputs)
    assert [r.rnn for r in records] == [lstm, gru]
    assert [s.as_list() for s in records[0].state_shapes] == [[3], [3]]
    assert_close(records[0].final_states[1], c, 0.0, "c")
    assert records[1].dtype == tf.float32 and len(records[1].final_states) == 1


def test_ignore_states_runs_a_stateful_rnn_from_its_initial_states_without_creating_them():
    rnn = tfrnn.RNN(tfrnn.GRUCell(2, seed=2), stateful=True)
    reference = tfrnn.RNN(rnn.cell)
    inputs = random_array(1, 3, 4, 2)
    with trace_context.scope(ignore_states=True):
        output = rnn(inputs)
    assert rnn.states == []
    assert_close(output, reference(inputs), 1e-6, "output")


def _xla_functions(concrete):
    """Names of the functions in a trace that are marked for XLA compilation."""
    library = concrete.graph.as_graph_def().library.function
    return [f.signature.name for f in library if f.attr["_XlaMustCompile"].b]


def test_the_jit_compile_override_applies_to_every_rnn():
    rnn = tfrnn.RNN(tfrnn.GRUCell(3), jit_compile=True)
    rnn.build([None, None, 2])
    spec = tf.TensorSpec([None, None, 2])
    assert _xla_functions(tf.function(lambda x: rnn(x)).get_concrete_function(spec))
    with trace_context.scope(jit_compile=False):
        plain = tf.function(lambda x: rnn(x)).get_concrete_function(spec)
    assert not _xla_functions(plain)


def test_streaming_feeds_explicit_states_and_leaves_stateful_variables_alone():
    rnn = tfrnn.RNN(tfrnn.LSTMCell(3, seed=1), stateful=True, return_state=True)
    inputs = random_array(0, 2, 4, 2)
    rnn(inputs)
    before = [v.numpy() for v in rnn.states]
    states = [tf.constant(random_array(i, 2, 3)) for i in (1, 2)]
    capture = StreamCapture([states])
    with trace_context.scope(stream=capture, observer=capture.record):
        output, h, c = rnn(inputs)
    reference = tfrnn.RNN(rnn.cell, return_state=True, jit_compile=False)
    expected = reference(inputs, initial_state=states)
    assert_close(output, expected[0], 1e-5, "output")
    assert_close(capture.final_states[1], expected[2], 1e-5, "c")
    for variable, value in zip(rnn.states, before):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_a_model_calling_more_rnns_than_recorded_is_an_error():
    rnn = tfrnn.RNN(tfrnn.SimpleRNNCell(2))
    capture = StreamCapture([[tf.zeros([1, 2])]])
    with trace_context.scope(stream=capture, observer=capture.record):
        rnn(tf.zeros([1, 3, 2]))
        with pytest.raises(ValueError, match="called 2 RNNs while streaming, but 1 were found"):
            rnn(tf.zeros([1, 3, 2]))
