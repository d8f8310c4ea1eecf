"""SimpleRNNCell against NumPy: h' = activation(x W + b + h U)."""

import pytest

import tfrnn
from cell_cases import EXECUTIONS, run_rnn
from conftest import CALLERS, assert_close, random_array
from matrix import all_pairs, case_id
from numpy_cells import run_sequence, simple_step

BATCH, TIME, FEATURES, UNITS = 2, 4, 3, 5

MATRIX = all_pairs(
    {
        "activation": ("tanh", "relu", "linear"),
        "use_bias": (True, False),
        "execution": EXECUTIONS,
        "caller": CALLERS,
    }
)


@pytest.mark.parametrize("case", MATRIX, ids=case_id)
def test_sequence_matches_numpy(case):
    cell = tfrnn.SimpleRNNCell(UNITS, activation=case["activation"], use_bias=case["use_bias"])
    cell.build([None, FEATURES])
    for index, variable in enumerate(cell.weights):
        variable.assign(random_array(20 + index, *variable.shape) * 0.5)
    inputs = random_array(1, BATCH, TIME, FEATURES)
    h0 = random_array(2, BATCH, UNITS)
    weights = [v.numpy() for v in cell.weights] + ([] if case["use_bias"] else [None])
    expected_outputs, (h,) = run_sequence(
        lambda x, h: simple_step(x, h, *weights, case["activation"]), inputs, (h0,)
    )
    outputs, states = run_rnn(cell, inputs, [h0], case["execution"], case["caller"])
    assert_close(outputs, expected_outputs, 1e-5, "outputs")
    assert_close(states[0], h, 1e-5, "h")


def test_weight_layout():
    cell = tfrnn.SimpleRNNCell(UNITS, use_bias=False)
    cell.build([None, FEATURES])
    assert [v.shape for v in cell.weights] == [[FEATURES, UNITS], [UNITS, UNITS]]
    assert cell.bias is None
