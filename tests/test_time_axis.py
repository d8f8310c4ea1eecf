"""time_axis: the time-major transpose and the masked select, against NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import CALLERS, assert_close, call_in, random_array
from tfrnn._core.time_axis import time_major, where_unmasked


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 3, 4, 5), (1, 0, 2)])
def test_time_major_swaps_batch_and_time_and_is_its_own_inverse(shape):
    tensor = random_array(1, *shape)
    expected = np.swapaxes(tensor, 0, 1)
    assert_close(time_major(tf.constant(tensor)), expected, 0.0, "time major")
    assert_close(time_major(time_major(tf.constant(tensor))), tensor, 0.0, "round trip")


@pytest.mark.parametrize("caller", CALLERS)
def test_where_unmasked_picks_new_for_unmasked_rows(caller):
    new, old = random_array(1, 3, 2, 4), random_array(2, 3, 2, 4)
    mask = np.array([True, False, True])
    result = call_in(caller, where_unmasked, tf.constant(mask), tf.constant(new), tf.constant(old))
    assert_close(result, np.where(mask[:, None, None], new, old), 0.0, "where")


def test_without_a_mask_it_is_new_itself():
    new = tf.constant(random_array(1, 3, 4))
    assert where_unmasked(None, new, tf.zeros([3, 4])) is new


def test_a_mask_of_unknown_batch_keeps_the_known_shape():
    """The loops' states must keep their static shapes (while-loop invariants)."""
    shapes = []

    def select(mask):
        result = where_unmasked(mask, tf.zeros([3, 4]), tf.ones([3, 4]))
        shapes.append(result.shape)
        return result

    tf.function(select, autograph=False).get_concrete_function(tf.TensorSpec([None], tf.bool))
    assert shapes == [tf.TensorShape([3, 4])]
