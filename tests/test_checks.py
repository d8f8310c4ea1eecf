"""checks.compare: a check of named outputs that no NaN, Inf, missing output or shape gets past."""

import numpy as np
import pytest
import tensorflow as tf

from tfrnn import export
from tfrnn._deploy import checks

CHECK = "demo check of serving_default"


def compare(actual, expected, tolerance=1e-3, **kwargs):
    return checks.compare(
        actual, expected, check=CHECK, tolerance=tolerance, actual_name="LiteRT", expected_name="TensorFlow", **kwargs
    )


def test_the_error_is_the_largest_difference_over_all_outputs():
    expected = {"outputs": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), "state_0": np.array([0.5], np.float32)}
    actual = {"outputs": np.array([[1.0, 2.0004], [3.0, 4.0]], np.float32), "state_0": np.array([0.5007], np.float32)}
    # Independent reference: the differences by hand (0.0004 and 0.0007), in float64.
    expected_error = abs(np.float64(np.float32(0.5007)) - np.float64(np.float32(0.5)))
    assert compare(actual, expected) == pytest.approx(expected_error, rel=1e-12)
    assert compare({"outputs": tf.constant(expected["outputs"])}, {"outputs": expected["outputs"]}) == 0.0


def test_outputs_only_the_actual_side_has_are_not_compared():
    assert compare({"outputs": np.ones(2), "extra": np.full(2, np.nan)}, {"outputs": np.ones(2)}) == 0.0


@pytest.mark.parametrize(
    "actual, expected, reason",
    [
        ({"outputs": [1.0, np.nan]}, {"outputs": [1.0, 2.0]}, "output 'outputs' is not finite in LiteRT: NaN at [1]"),
        ({"outputs": [1.0, 2.0]}, {"outputs": [np.nan, 2.0]}, "output 'outputs' is not finite in TensorFlow: NaN at [0]"),
        ({"outputs": [np.nan, 2.0]}, {"outputs": [np.nan, 2.0]}, "output 'outputs' is not finite in TensorFlow: NaN at [0]"),
        ({"outputs": [[1.0], [np.inf]]}, {"outputs": [[1.0], [2.0]]}, "output 'outputs' is not finite in LiteRT: Inf at [1, 0]"),
        ({"outputs": [1.0, 2.0]}, {"outputs": [1.0, -np.inf]}, "output 'outputs' is not finite in TensorFlow: Inf at [1]"),
        ({"outputs": np.float32(np.nan)}, {"outputs": np.float32(1.0)}, "output 'outputs' is not finite in LiteRT: NaN at []"),
        ({"outputs": [1.0]}, {"outputs": [1.0], "state_0": [0.0]}, "output 'state_0' is missing from LiteRT's outputs ['outputs']"),
        ({"outputs": np.zeros([2, 3])}, {"outputs": np.zeros([2, 1, 3])}, "output 'outputs' has shape [2, 3] in LiteRT, [2, 1, 3] in TensorFlow"),
        ({"outputs": np.zeros([0, 3])}, {"outputs": np.zeros([1, 3])}, "output 'outputs' has shape [0, 3] in LiteRT, [1, 3] in TensorFlow"),
        ({"outputs": [1.0, 2.5]}, {"outputs": [1.0, 2.0]}, "output 'outputs' differs by 0.5 (> 0.001)"),
        ({}, {}, "there are no TensorFlow outputs to compare with"),
    ],
)
def test_every_unsound_comparison_fails_with_one_message(actual, expected, reason):
    actual = {k: np.asarray(v) for k, v in actual.items()}
    expected = {k: np.asarray(v) for k, v in expected.items()}
    with pytest.raises(checks.CheckFailed) as failure:
        compare(actual, expected)
    assert str(failure.value) == f"{CHECK} failed: {reason}; nothing was written"
    assert isinstance(failure.value, ValueError)  # what the tools catch


def test_a_nan_is_found_wherever_it_is_even_where_another_output_is_fine():
    expected = {"outputs": np.zeros([2, 3, 4], np.float32), "state_0": np.zeros([2, 4], np.float32)}
    actual = {k: v.copy() for k, v in expected.items()}
    actual["state_0"][1, 2] = np.nan
    with pytest.raises(checks.CheckFailed, match=r"output 'state_0' is not finite in LiteRT: NaN at \[1, 2\]"):
        compare(actual, expected)


def test_empty_outputs_of_equal_shapes_compare_as_equal():
    assert compare({"outputs": np.zeros([0, 4])}, {"outputs": np.zeros([0, 4])}) == 0.0


def test_integer_and_boolean_outputs_compare_exactly():
    assert compare({"ids": np.array([1, 2], np.int32)}, {"ids": np.array([1, 2], np.int32)}) == 0.0
    with pytest.raises(checks.CheckFailed, match="output 'flags' differs by 1"):
        compare({"flags": np.array([True, False])}, {"flags": np.array([True, True])})


def test_the_hint_comes_only_with_a_difference_and_the_consequence_can_be_left_out():
    with pytest.raises(checks.CheckFailed) as failure:
        compare({"outputs": [2.0]}, {"outputs": [1.0]}, hint="Try step=False")
    assert str(failure.value).endswith("differs by 1 (> 0.001); nothing was written. Try step=False")
    with pytest.raises(checks.CheckFailed) as failure:
        compare({"outputs": [np.nan]}, {"outputs": [1.0]}, hint="Try step=False")
    assert "Try step=False" not in str(failure.value)
    with pytest.raises(checks.CheckFailed) as failure:
        compare({"outputs": [2.0]}, {"outputs": [1.0]}, consequence=None)
    assert str(failure.value) == f"{CHECK} failed: output 'outputs' differs by 1 (> 0.001)"


def test_the_public_check_outputs_is_the_same_comparison():
    assert export.check_outputs({"y": [1.0, 2.0]}, {"y": [1.0, 2.5]}, check="demo", tolerance=1.0) == 0.5
    with pytest.raises(export.CheckFailed, match="^runtime check failed: output 'y' is not finite in LiteRT: NaN at \\[0\\]$"):
        export.check_outputs(
            {"y": [np.nan]}, {"y": [1.0]}, check="runtime check", tolerance=1.0, actual_name="LiteRT"
        )
