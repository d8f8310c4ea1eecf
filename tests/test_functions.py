"""functions: one traced function per route and state use, and the eager concrete-function cache."""

import pytest
import tensorflow as tf

from tfrnn._core.functions import FunctionsByRoute, TracedFunction
from tfrnn._core.paths import Path, Route


def test_one_traced_function_per_route_and_state_use():
    functions = FunctionsByRoute(lambda *args: None, reduce_retracing=True)
    fast, dense = Route(Path.FAST, True), Route(Path.DENSE, False)
    assert functions(fast, True, True) is functions(fast, True, True)
    assert functions(fast, True, True) is not functions(fast, True, False)
    assert functions(fast, True, True) is not functions(dense, True, True)
    assert functions(fast, False, False).run._jit_compile
    assert not functions(dense, False, False).run._jit_compile


def test_eager_calls_reuse_one_concrete_function_per_signature():
    traces = []

    def run(inputs, mask, initial_state, constants, training):
        traces.append(inputs.shape)
        return inputs * 2.0, []

    function = TracedFunction(run, jit_compile=False, reduce_retracing=False)
    for _ in range(3):
        output, _ = function(tf.ones([2, 3, 1]), None, None, None, False)
    function(tf.ones([2, 4, 1]), None, None, None, False)
    assert traces == [tf.TensorShape([2, 3, 1]), tf.TensorShape([2, 4, 1])]
    assert float(output[0, 0, 0]) == 2.0


def test_a_deep_copy_of_a_called_rnn_traces_its_own_functions():
    """Traces hold graphs, which cannot be copied: the copy starts with an empty cache bound
    to itself, so it computes with its own variables."""
    import copy

    import numpy as np

    import tfrnn

    rnn = tfrnn.RNN(tfrnn.GRUCell(3, seed=1), jit_compile=False)
    inputs = tf.ones([2, 4, 5])
    expected = rnn(inputs).numpy()
    copied = copy.deepcopy(rnn)
    np.testing.assert_array_equal(copied(inputs).numpy(), expected)
    copied.cell.kernel.assign(tf.zeros_like(copied.cell.kernel))
    np.testing.assert_array_equal(rnn(inputs).numpy(), expected)
    assert not np.array_equal(copied(inputs).numpy(), expected)


def _rnn_pair(cell):
    """An XLA-compiled RNN and a twin with the same weights that runs without XLA."""
    import tfrnn

    def make(jit_compile):
        if cell == "lstm":  # the fast loop
            new_cell = tfrnn.LSTMCell(4, seed=3)
        else:  # the generic loop under the recompute gradient
            new_cell = tfrnn.LSTMCell(4, projection_units=3, seed=3)
        return tfrnn.RNN(new_cell, return_sequences=True, jit_compile=jit_compile)

    compiled, plain = make(True), make(False)
    for rnn in (compiled, plain):
        rnn.build([None, 5, 2])
    plain.cell.set_weights(compiled.cell.get_weights())
    return compiled, plain


@pytest.mark.parametrize("cell", ["lstm", "projected_lstm"])
def test_gradients_in_traces_and_eagerly_in_any_order(cell):
    """A gradient taken in a plain `tf.function` used to break every later eager gradient of
    the same RNN ("TensorList crossing the XLA/TF boundary"): the eager calls shared the
    traced concrete function, whose outputs that gradient had extended."""
    from conftest import assert_close, call_in, random_array

    compiled, plain = _rnn_pair(cell)
    inputs = tf.constant(random_array(0, 3, 5, 2))

    def gradients(rnn):
        def compute(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(rnn(x) ** 2)
            return tape.gradient(loss, rnn.trainable_variables)

        return compute

    expected = [g.numpy() for g in gradients(plain)(inputs)]
    for caller in ("function", "eager", "jit", "eager", "function"):
        actual = call_in(caller, gradients(compiled), inputs)
        for a, e, variable in zip(actual, expected, compiled.trainable_variables):
            assert_close(a, e, 1e-5, f"{caller}: {variable.name}")
