"""GRUCell against the NumPy gate equations (gate order z, r, h; both reset_after)."""

import numpy as np
import pytest

import tfrnn
from cell_cases import EXECUTIONS, run_rnn
from conftest import CALLERS, assert_close, random_array
from matrix import all_pairs, case_id
from numpy_cells import gru_step, run_sequence

BATCH, TIME, FEATURES, UNITS = 2, 4, 3, 5

MATRIX = all_pairs(
    {
        "reset_after": (True, False),
        "activation": ("tanh", "relu"),
        "recurrent_activation": ("sigmoid", "hard_sigmoid"),
        "use_bias": (True, False),
        "execution": EXECUTIONS,
        "caller": CALLERS,
    }
)


@pytest.mark.parametrize("case", MATRIX, ids=case_id)
def test_sequence_matches_numpy(case):
    cell = tfrnn.GRUCell(
        UNITS,
        activation=case["activation"],
        recurrent_activation=case["recurrent_activation"],
        use_bias=case["use_bias"],
        reset_after=case["reset_after"],
    )
    cell.build([None, FEATURES])
    for index, variable in enumerate(cell.weights):
        variable.assign(random_array(20 + index, *variable.shape) * 0.5)
    inputs = random_array(1, BATCH, TIME, FEATURES)
    h0 = random_array(2, BATCH, UNITS)
    weights = [v.numpy() for v in cell.weights] + ([] if case["use_bias"] else [None])
    expected_outputs, (h,) = run_sequence(
        lambda x, h: gru_step(
            x, h, *weights, case["reset_after"], case["activation"], case["recurrent_activation"]
        ),
        inputs,
        (h0,),
    )
    outputs, states = run_rnn(cell, inputs, [h0], case["execution"], case["caller"])
    assert_close(outputs, expected_outputs, 1e-5, "outputs")
    assert_close(states[0], h, 1e-5, "h")


@pytest.mark.parametrize("reset_after, bias_shape", [(True, [2, 3 * UNITS]), (False, [3 * UNITS])])
def test_weight_layout(reset_after, bias_shape):
    cell = tfrnn.GRUCell(UNITS, reset_after=reset_after)
    cell.build([None, FEATURES])
    assert cell.kernel.shape == [FEATURES, 3 * UNITS]
    assert cell.recurrent_kernel.shape == [UNITS, 3 * UNITS]
    assert cell.bias.shape == bias_shape
    assert cell.state_size == UNITS and cell.output_size == UNITS


def test_single_step_call():
    cell = tfrnn.GRUCell(UNITS)
    cell.build([None, FEATURES])
    for index, variable in enumerate(cell.weights):
        variable.assign(random_array(30 + index, *variable.shape))
    x, h = random_array(4, BATCH, FEATURES), random_array(5, BATCH, UNITS)
    output, (new_h,) = cell(x, [h])
    expected = gru_step(x, h, *[v.numpy() for v in cell.weights])
    assert_close(output, expected, 1e-5)
    assert_close(new_h, expected, 1e-5)
    # Keras cells also take a single state tensor instead of a list.
    assert_close(cell(x, h)[0], expected, 1e-5)
    np.testing.assert_array_equal(cell.get_initial_state(3)[0].numpy(), np.zeros([3, UNITS]))
