"""LSTMCell against the NumPy gate equations (gate order i, f, c, o)."""

import numpy as np
import pytest
import tensorflow as tf

import tfrnn
from cell_cases import EXECUTIONS, run_rnn
from conftest import CALLERS, assert_close, random_array
from matrix import all_pairs, case_id
from numpy_cells import lstm_step, run_sequence

BATCH, TIME, FEATURES, UNITS = 2, 4, 3, 5

MATRIX = all_pairs(
    {
        "activation": ("tanh", "relu"),
        "recurrent_activation": ("sigmoid", "hard_sigmoid"),
        "use_bias": (True, False),
        "execution": EXECUTIONS,
        "caller": CALLERS,
    }
)


def _randomized(cell):
    """Non-trivial weights (the default bias is mostly zeros)."""
    for index, variable in enumerate(cell.weights):
        variable.assign(random_array(20 + index, *variable.shape) * 0.5)
    return cell


@pytest.mark.parametrize("case", MATRIX, ids=case_id)
def test_sequence_matches_numpy(case):
    cell = tfrnn.LSTMCell(
        UNITS,
        activation=case["activation"],
        recurrent_activation=case["recurrent_activation"],
        use_bias=case["use_bias"],
    )
    cell.build([None, FEATURES])
    _randomized(cell)
    inputs = random_array(1, BATCH, TIME, FEATURES)
    h0, c0 = random_array(2, BATCH, UNITS), random_array(3, BATCH, UNITS)
    weights = [v.numpy() for v in cell.weights] + ([] if case["use_bias"] else [None])
    expected_outputs, (h, c) = run_sequence(
        lambda x, h, c: lstm_step(
            x, h, c, *weights, case["activation"], case["recurrent_activation"]
        ),
        inputs,
        (h0, c0),
    )
    outputs, states = run_rnn(cell, inputs, [h0, c0], case["execution"], case["caller"])
    assert_close(outputs, expected_outputs, 1e-5, "outputs")
    assert_close(states[0], h, 1e-5, "h")
    assert_close(states[1], c, 1e-5, "c")


def test_single_step_call():
    cell = _randomized_built()
    x, h, c = random_array(4, BATCH, FEATURES), random_array(5, BATCH, UNITS), random_array(6, BATCH, UNITS)
    output, (new_h, new_c) = cell(x, [h, c])
    expected_h, expected_c = lstm_step(x, h, c, *[v.numpy() for v in cell.weights])
    assert_close(output, expected_h, 1e-5)
    assert_close(new_h, expected_h, 1e-5)
    assert_close(new_c, expected_c, 1e-5)


def _randomized_built():
    cell = tfrnn.LSTMCell(UNITS)
    cell.build([None, FEATURES])
    return _randomized(cell)


def test_weight_layout_and_unit_forget_bias():
    cell = tfrnn.LSTMCell(UNITS, seed=3)
    cell.build([None, FEATURES])
    assert cell.kernel.shape == [FEATURES, 4 * UNITS]
    assert cell.recurrent_kernel.shape == [UNITS, 4 * UNITS]
    bias = cell.bias.numpy()
    np.testing.assert_array_equal(bias[UNITS : 2 * UNITS], 1.0)
    np.testing.assert_array_equal(np.delete(bias, np.s_[UNITS : 2 * UNITS]), 0.0)
    assert cell.state_size == [UNITS, UNITS] and cell.output_size == UNITS
    without = tfrnn.LSTMCell(UNITS, unit_forget_bias=False)
    without.build([None, FEATURES])
    np.testing.assert_array_equal(without.bias.numpy(), 0.0)


def test_orthogonal_recurrent_kernel_blocks():
    cell = tfrnn.LSTMCell(UNITS, seed=4)
    cell.build([None, FEATURES])
    u = cell.recurrent_kernel.numpy()
    # Keras' orthogonal initializer on [units, 4 units]: orthonormal rows.
    assert_close(u @ u.T, np.eye(UNITS), 1e-5)


def test_seed_makes_weights_reproducible():
    a, b = tfrnn.LSTMCell(UNITS, seed=7), tfrnn.LSTMCell(UNITS, seed=7)
    a.build([None, FEATURES])
    b.build([None, FEATURES])
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(units=0), ValueError, "units must be a positive int, got 0"),
        (dict(units=4, activation="nope"), ValueError, "activation must be one of"),
        (dict(units=4, kernel_initializer="nope"), ValueError, "kernel_initializer must be one of"),
        (dict(units=4, dropout=1.0), ValueError, r"dropout must be in \[0, 1\), got 1.0"),
        (dict(units=4, recurrent_dropout="0.1"), TypeError, "recurrent_dropout must be a float"),
        (dict(units=4, dtype=tf.int32), TypeError, "dtype must be a floating dtype, got int32"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        tfrnn.LSTMCell(**kwargs)


# -- projection (PyTorch's nn.LSTM(proj_size=...)) ---------------------------------------------

PROJECTION = 2

PROJECTION_MATRIX = all_pairs(
    {"use_bias": (True, False), "execution": EXECUTIONS, "caller": CALLERS, "initial_state": (True, False)}
)


def _projected(use_bias=True):
    cell = tfrnn.LSTMCell(UNITS, projection_units=PROJECTION, use_bias=use_bias)
    cell.build([None, FEATURES])
    return _randomized(cell)


def _numpy_projected(cell, inputs, h0, c0):
    """The gate equations, then h = (o * tanh(c)) @ projection_kernel, step by step."""
    kernel, recurrent_kernel = cell.kernel.numpy(), cell.recurrent_kernel.numpy()
    bias = cell.bias.numpy() if cell.bias is not None else None
    projection = cell.projection_kernel.numpy()

    def step(x, h, c):
        unprojected, c = lstm_step(x, h, c, kernel, recurrent_kernel, bias)
        return unprojected @ projection, c

    return run_sequence(step, inputs, (h0, c0))


@pytest.mark.parametrize("case", PROJECTION_MATRIX, ids=case_id)
def test_projection_matches_numpy(case):
    cell = _projected(case["use_bias"])
    assert [w.shape for w in cell.weights][-1] == [UNITS, PROJECTION]
    assert cell.state_size == [PROJECTION, UNITS] and cell.output_size == PROJECTION
    inputs = random_array(1, BATCH, TIME, FEATURES)
    h0, c0 = random_array(2, BATCH, PROJECTION), random_array(3, BATCH, UNITS)
    if not case["initial_state"]:
        h0, c0 = np.zeros_like(h0), np.zeros_like(c0)
    expected_outputs, (h, c) = _numpy_projected(cell, inputs, h0, c0)
    outputs, states = run_rnn(cell, inputs, [h0, c0], case["execution"], case["caller"])
    assert_close(outputs, expected_outputs, 1e-5, "outputs")
    assert_close(states[0], h, 1e-5, "h")
    assert_close(states[1], c, 1e-5, "c")


def test_projection_gradients_match_a_python_loop_over_the_cell():
    cell = _projected()
    inputs = tf.constant(random_array(1, BATCH, TIME, FEATURES))
    mask = tf.constant(np.array([[1, 1, 0, 1], [0, 1, 1, 1]], bool))
    rnn = tfrnn.RNN(cell, return_sequences=True)

    def loop(x):
        h, c = tf.zeros([BATCH, PROJECTION]), tf.zeros([BATCH, UNITS])
        output, outputs = tf.zeros([BATCH, PROJECTION]), []
        for t in range(TIME):
            new_output, (new_h, new_c) = cell(x[:, t], [h, c])
            keep = mask[:, t : t + 1]
            h, c = tf.where(keep, new_h, h), tf.where(keep, new_c, c)
            output = tf.where(keep, new_output, output)
            outputs.append(output)
        return tf.stack(outputs, 1)

    gradients = []
    for run in (lambda x: rnn(x, mask=mask), loop):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.reduce_sum(run(inputs) * random_array(4, BATCH, TIME, PROJECTION))
        gradients.append(tape.gradient(loss, [inputs] + cell.weights))
    for ours, theirs, name in zip(*gradients, ["inputs", "kernel", "recurrent", "bias", "projection"]):
        assert_close(ours, theirs, 1e-5, name)


def test_projected_lstm_runs_on_the_generic_loop():
    assert _projected().fast_loop_spec() is None
    assert _randomized_built().fast_loop_spec() is not None
    config = _projected().get_config()
    assert config["projection_units"] == PROJECTION
    assert tfrnn.LSTMCell.from_config(config).state_size == [PROJECTION, UNITS]


def test_projected_initial_state_of_the_wrong_shape():
    rnn = tfrnn.RNN(_projected())
    wrong = [tf.zeros([BATCH, UNITS]), tf.zeros([BATCH, UNITS])]
    with pytest.raises(ValueError, match=r"initial_state must have 2 tensors \(h, c\) of shape \[2, 2\], \[2, 5\], got 2 tensors of shape \[2, 5\], \[2, 5\]"):
        rnn(tf.zeros([BATCH, TIME, FEATURES]), initial_state=wrong)


@pytest.mark.parametrize("value", [0, -1, 2.0, True])
def test_projection_units_must_be_positive(value):
    with pytest.raises(ValueError, match=f"projection_units must be a positive int or None, got {value!r}"):
        tfrnn.LSTMCell(UNITS, projection_units=value)


try:
    import torch
except ImportError:  # torch is optional: the NumPy reference above always runs
    torch = None

if torch is not None:

    def test_projection_matches_pytorch():
        torch.manual_seed(0)
        reference = torch.nn.LSTM(FEATURES, UNITS, proj_size=PROJECTION, batch_first=True)
        cell = tfrnn.LSTMCell(UNITS, projection_units=PROJECTION)
        cell.build([None, FEATURES])
        p = {name: value.detach().numpy() for name, value in reference.named_parameters()}
        cell.set_weights([
            p["weight_ih_l0"].T, p["weight_hh_l0"].T, p["bias_ih_l0"] + p["bias_hh_l0"], p["weight_hr_l0"].T,
        ])  # fmt: skip
        inputs = random_array(1, BATCH, TIME, FEATURES)
        h0, c0 = random_array(2, BATCH, PROJECTION), random_array(3, BATCH, UNITS)
        expected, (h, c) = reference(torch.from_numpy(inputs), (torch.from_numpy(h0[None]), torch.from_numpy(c0[None])))
        outputs, states = run_rnn(cell, inputs, [h0, c0], "jit-while", "eager")
        assert_close(outputs, expected.detach().numpy(), 1e-5, "outputs")
        assert_close(states[0], h[0].detach().numpy(), 1e-5, "h")
        assert_close(states[1], c[0].detach().numpy(), 1e-5, "c")


def test_projected_lstm_exports_and_converts_unfused(tmp_path):
    from tfrnn import export, tflite

    rnn = tfrnn.RNN(_projected(), return_sequences=True)
    rnn.build([None, None, FEATURES])
    result = export.export_saved_model(rnn, str(tmp_path / "projected"))
    assert max(result.max_abs_error.values()) <= 1e-5
    converted = tflite.convert(result.path)
    assert converted.fused_lstms == 0 and "WHILE" in converted.ops, converted.ops
    inputs = random_array(1, 1, TIME, FEATURES)
    runner = tflite.interpreter(converted.model_content).get_signature_runner("serving_default")
    assert_close(runner(inputs=inputs)["outputs"], rnn(inputs), 1e-4, "LiteRT")
