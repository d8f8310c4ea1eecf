"""Dropout masks: statistics, determinism, and the same masks with and without XLA."""

import numpy as np
import pytest
import tensorflow as tf

from tfrnn._core import dropout


def test_masks_are_inverted_dropout_with_the_given_rate():
    (mask,) = dropout.dropout_masks(tf.constant([3, 4]), [200, 500], 0.3, tf.float32)
    values = mask.numpy()
    assert set(np.unique(values)) == {0.0, np.float32(1.0 / 0.7)}
    assert abs((values == 0).mean() - 0.3) < 0.01
    assert abs(values.mean() - 1.0) < 0.02


def test_same_seed_same_masks_other_seed_other_masks():
    a = dropout.dropout_masks(tf.constant([1, 2]), [8, 8], 0.5, tf.float32, count=3)
    b = dropout.dropout_masks(tf.constant([1, 2]), [8, 8], 0.5, tf.float32, count=3)
    c = dropout.dropout_masks(tf.constant([1, 3]), [8, 8], 0.5, tf.float32, count=3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    assert not np.array_equal(a[0].numpy(), c[0].numpy())
    assert not np.array_equal(a[0].numpy(), a[1].numpy())


@pytest.mark.parametrize("seed", [[7, 0], [511886651086640123, 3], [-5, 2]])
def test_xla_and_plain_tf_draw_the_same_numbers(seed):
    seed = tf.constant(seed, tf.int64)
    eager = dropout.uniform(seed, [5, 7])
    compiled = tf.function(lambda s: dropout.uniform(s, [5, 7]), jit_compile=True)(seed)
    np.testing.assert_array_equal(eager.numpy(), compiled.numpy())


def test_uniform_looks_uniform():
    values = dropout.uniform(tf.constant([9, 9]), [100000]).numpy()
    assert 0.0 <= values.min() and values.max() < 1.0
    assert abs(values.mean() - 0.5) < 0.01 and abs(values.std() - 12 ** -0.5) < 0.01


def test_seed_stream_advances_and_is_reproducible():
    a, b = dropout.SeedStream(5), dropout.SeedStream(5)
    first = a.next().numpy()
    assert not np.array_equal(first, a.next().numpy())
    np.testing.assert_array_equal(first, tf.function(b.next, jit_compile=True)().numpy())


@pytest.mark.parametrize("rate, error", [(1.0, ValueError), (-0.1, ValueError), (True, TypeError)])
def test_bad_rates(rate, error):
    with pytest.raises(error, match="dropout"):
        dropout.check_rate(rate, "dropout")
