"""Reading state_size, and the shape descriptions in error messages."""

import numpy as np
import pytest
import tensorflow as tf

from tfrnn._core import state_spec


@pytest.mark.parametrize(
    "state_size, expected",
    [
        (5, [[5]]),
        ([5, 5], [[5], [5]]),
        (tf.TensorShape([2, 3]), [[2, 3]]),
        ([[2, 3]], [[2, 3]]),
        ([4, tf.TensorShape([2, 3]), (6, 7)], [[4], [2, 3], [6, 7]]),
        (np.int64(3), [[3]]),
        # Stateless cells (tf-keras allows them): empty entries are no state.
        ((), []),
        (((), [], ()), []),
        ([(), 4], [[4]]),
    ],
)
def test_flat_state_shapes(state_size, expected):
    assert [s.as_list() for s in state_spec.flat_state_shapes(state_size)] == expected


@pytest.mark.parametrize(
    "state_size, error, message",
    [
        (0, ValueError, "must give positive, fully known sizes"),
        (tf.TensorShape([None]), ValueError, "fully known"),
        ("big", TypeError, "entries must be an int"),
        ([[[1]]], TypeError, "entries must be an int"),
        (True, TypeError, "entries must be an int"),
    ],
)
def test_bad_state_sizes(state_size, error, message):
    with pytest.raises(error, match=message):
        state_spec.flat_state_shapes(state_size)


def test_descriptions():
    assert state_spec.describe([np.zeros([4, 32])]) == "1 tensor of shape [4, 32]"
    assert state_spec.describe([np.zeros([4, 32]), np.zeros([1])]) == "2 tensors of shape [4, 32], [1]"
    assert state_spec.describe_shape(tf.TensorSpec([None, 3])) == "[None, 3]"
    shapes = [tf.TensorShape([64]), tf.TensorShape([64])]
    assert state_spec.format_state_shapes(shapes) == "[batch, 64], [batch, 64]"


@pytest.mark.parametrize(
    "output_size, expected",
    [
        (4, [4]),
        (tf.TensorShape([2, 3]), [2, 3]),
        ((4, tf.TensorShape([2, 3])), ([4], [2, 3])),
        ({"a": 1, "b": 2}, {"a": [1], "b": [2]}),
    ],
)
def test_output_shapes_keep_the_nest_of_output_size(output_size, expected):
    shapes = state_spec.output_shapes(output_size)
    assert tf.nest.map_structure(lambda s: s.as_list(), shapes) == expected
