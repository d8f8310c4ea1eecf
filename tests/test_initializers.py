"""Initializers by Keras name: Keras' statistics, seeded, validated."""

import numpy as np
import pytest
import tensorflow as tf

from tfrnn._core import initializers


def _draw(name, shape, seed=0):
    return initializers.initial_value(name, shape, tf.float32, tf.random.Generator.from_seed(seed)).numpy()


def test_glorot_uniform_limit_and_spread():
    values = _draw("glorot_uniform", [200, 300])
    limit = np.sqrt(6.0 / 500.0)
    assert np.abs(values).max() <= limit
    assert abs(values.std() - limit / np.sqrt(3.0)) < 0.01 * limit


def test_orthogonal_for_wide_and_tall_shapes():
    wide = _draw("orthogonal", [8, 32])
    np.testing.assert_allclose(wide @ wide.T, np.eye(8), atol=1e-5)
    tall = _draw("orthogonal", [32, 8])
    np.testing.assert_allclose(tall.T @ tall, np.eye(8), atol=1e-5)


@pytest.mark.parametrize("name", sorted(initializers._BY_NAME))
def test_every_name_draws_the_right_shape_reproducibly(name):
    shape = [6, 6]
    np.testing.assert_array_equal(_draw(name, shape, 3), _draw(name, shape, 3))
    assert _draw(name, shape).shape == (6, 6)


def test_callables():
    value = initializers.initial_value(lambda shape, dtype: tf.fill(shape, 2.0), [2], tf.float32, None)
    np.testing.assert_array_equal(value.numpy(), [2.0, 2.0])


@pytest.mark.parametrize("value, error", [("nope", ValueError), (3, TypeError)])
def test_bad_initializers(value, error):
    with pytest.raises(error, match="kernel_initializer"):
        initializers.check(value, "kernel_initializer")
