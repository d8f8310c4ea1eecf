"""recompute_gradient equals plain autodiff, and makes XLA while-loop gradients work."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import CALLERS, assert_close, call_in, random_array
from tfrnn._core.recompute import recompute_gradient

W = tf.Variable(random_array(1, 3, 3) * 0.5)


def _loop(x, h0):
    """A while loop over x's first axis, reading W: h <- tanh(x_t + h W)."""
    steps = tf.shape(x)[0]

    def body(t, h, total):
        h = tf.tanh(x[t] + h @ W)
        return [t + 1, h, total + tf.reduce_sum(h)]

    _, h, total = tf.while_loop(
        lambda t, *_: t < steps, body, [0, h0, tf.constant(0.0)], maximum_iterations=steps
    )
    return {"h": h, "total": total}


def _gradients(fn, x, h0):
    with tf.GradientTape() as tape:
        tape.watch([x, h0])
        out = fn(x, h0)
        loss = tf.reduce_sum(out["h"] * random_array(2, 2, 3)) + 0.5 * out["total"]
    return tape.gradient(loss, [x, h0, W])


@pytest.mark.parametrize("caller", CALLERS)
def test_matches_autodiff_through_a_compiled_while_loop(caller):
    x, h0 = tf.constant(random_array(3, 4, 2, 3)), tf.constant(random_array(4, 2, 3))
    expected = _gradients(_loop, x, h0)
    compiled = tf.function(
        lambda x, h0: recompute_gradient(lambda *a: _loop(*a), [x, h0]), jit_compile=True
    )
    grads = call_in(caller, lambda x, h0: _gradients(compiled, x, h0), x, h0)
    for a, b in zip(grads, expected):
        assert_close(a, b, 1e-5)


def test_without_it_tf_refuses():
    """The failure recompute_gradient exists for (if TF fixes it, this test says so)."""
    x, h0 = tf.constant(random_array(3, 4, 2, 3)), tf.constant(random_array(4, 2, 3))
    compiled = tf.function(_loop, jit_compile=True)
    with pytest.raises(tf.errors.UnimplementedError, match="TensorList crossing the XLA/TF boundary"):
        _gradients(compiled, x, h0)


def test_unused_outputs_get_zero_gradients():
    x = tf.constant(random_array(5, 2, 3))
    with tf.GradientTape() as tape:
        tape.watch(x)
        first, _ = recompute_gradient(lambda x: (x * 2.0, x @ W), [x])
        loss = tf.reduce_sum(first)
    grad_x, grad_w = tape.gradient(loss, [x, W])
    np.testing.assert_array_equal(grad_x.numpy(), 2.0)
    assert grad_w is None or np.all(grad_w.numpy() == 0.0)
