"""Activations by Keras name match tf-keras' definitions."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tfrnn._core import activations


@pytest.mark.parametrize("name", sorted(activations._BY_NAME))
def test_matches_tf_keras(name):
    x = tf.constant(np.linspace(-4.0, 4.0, 33, dtype=np.float32))
    ours = activations.get(name)(x)
    theirs = tf_keras.activations.get(name)(x)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-6)


def test_callables_and_none():
    assert activations.get(tf.sin) is tf.sin
    assert activations.get(None)(tf.constant(2.0)).numpy() == 2.0
    assert activations.name_of(tf.tanh) == "tanh"
    assert activations.name_of(None) == "linear"


@pytest.mark.parametrize("value, error", [("nope", ValueError), (3, TypeError)])
def test_bad_activations(value, error):
    with pytest.raises(error, match="activation must be"):
        activations.get(value)
