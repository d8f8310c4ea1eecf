"""tfrnn.tflite: LiteRT runs converted models as the models run in TensorFlow, fused where it can."""

import json
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import tfrnn
from tfrnn._deploy import composite_lstm
from tfrnn import export
from tfrnn import tflite
from conftest import assert_close, random_array, random_mask
from matrix import all_pairs, case_id

TIME, FEATURES, UNITS = 5, 3, 4
CELLS = {
    "lstm": lambda: tfrnn.LSTMCell(UNITS, seed=1),
    "gru": lambda: tfrnn.GRUCell(UNITS, seed=2),
    "gru_reset_before": lambda: tfrnn.GRUCell(UNITS, reset_after=False, seed=3),
    "simple": lambda: tfrnn.SimpleRNNCell(UNITS, seed=4),
    "stacked": lambda: [tfrnn.LSTMCell(UNITS, seed=5), tfrnn.GRUCell(3, seed=6)],
}

MATRIX = all_pairs(
    {
        "cell": tuple(CELLS),
        "return_sequences": (False, True),
        "go_backwards": (False, True),
        "mask": (False, True),
        "stateful": (False, True),
        "batch": (1, 2, None),
    },
    allowed=lambda c: not (c["stateful"] and c["batch"] is None),
)


def expect_fused(case):
    return (
        case["cell"] == "lstm" and not case["mask"] and not case["stateful"] and case["batch"] is not None
    )


def invoke(runner, inputs, mask):
    feed = {"inputs": inputs, **({"mask": mask} if mask is not None else {})}
    return runner(**feed)["outputs"]


@pytest.mark.parametrize("case", MATRIX, ids=case_id)
def test_litert_matches_the_model_on_consecutive_invocations(case):
    batch = case["batch"] or 3
    rnn = tfrnn.RNN(
        CELLS[case["cell"]](),
        return_sequences=case["return_sequences"],
        go_backwards=case["go_backwards"],
        stateful=case["stateful"],
    )
    rnn.build([batch if case["stateful"] else None, None, FEATURES])
    result = tflite.convert(rnn, mask=case["mask"], batch_size=case["batch"])
    assert not [op for op in result.ops if op.startswith("CUSTOM")], result.ops
    assert result.fused_lstms == (1 if expect_fused(case) else 0), result.ops
    if case["cell"] != "lstm" or not expect_fused(case):
        assert result.ops.get("WHILE", 0) >= 1  # the full sequence, as a loop of builtins
    runtime = tflite.interpreter(result.model_content)
    runner = runtime.get_signature_runner("serving_default")
    mask = random_mask(1, batch, TIME) if case["mask"] else None
    # Different inputs each time: a stateless model must not carry state from one to the
    # next (the fused op's trap); a stateful one must, as the TF model does.
    for call in range(2):
        inputs = random_array(10 + call, batch, TIME, FEATURES)
        assert_close(invoke(runner, inputs, mask), rnn(inputs, mask=mask), 1e-4, f"invocation {call}")
    if case["stateful"]:
        runtime.get_signature_runner("reset_state")()
        rnn.reset_state()
        inputs = random_array(12, batch, TIME, FEATURES)
        assert_close(invoke(runner, inputs, mask), rnn(inputs, mask=mask), 1e-4, "after reset_state")


@pytest.fixture(scope="module")
def lstm():
    rnn = tfrnn.RNN(tfrnn.LSTMCell(UNITS, seed=7), return_sequences=True)
    rnn.build([None, None, FEATURES])
    return rnn


def test_streaming_through_the_step_signature_equals_the_whole_sequence(lstm):
    result = tflite.convert(lstm, batch_size=2)
    assert "WHILE" not in result.ops  # the fused op for the sequence, one unrolled step for step
    step = tflite.interpreter(result.model_content).get_signature_runner("step")
    inputs = random_array(3, 2, TIME, FEATURES)
    states = {"state_0": np.zeros([2, UNITS], np.float32), "state_1": np.zeros([2, UNITS], np.float32)}
    outputs = []
    for t in range(TIME):
        out = step(inputs=inputs[:, t], **states)
        outputs.append(out.pop("outputs"))
        states = out
    assert_close(np.stack(outputs, 1), lstm(inputs), 1e-4, "streamed outputs")


def test_the_fused_ops_state_trap_is_real_and_avoided(lstm):
    """A constant zero initial state becomes a variable tensor that leaks into the next call."""
    cell = lstm.cell

    @tf.function(input_signature=[tf.TensorSpec([1, None, FEATURES])])
    def naive(inputs):
        zeros = tf.zeros([1, UNITS])
        _, outputs, _, _, _ = composite_lstm.composite_function()(
            inputs, zeros, tf.zeros([1, UNITS]), cell.kernel.read_value(),
            cell.recurrent_kernel.read_value(), cell.bias.read_value(),
        )
        return {"outputs": outputs}

    module = tf.Module()
    module.cell = cell
    converter = tf.lite.TFLiteConverter.from_concrete_functions([naive.get_concrete_function()], module)
    runner = tflite.interpreter(converter.convert()).get_signature_runner()
    inputs = random_array(4, 1, TIME, FEATURES)
    first, second = invoke(runner, inputs, None), invoke(runner, inputs, None)
    assert np.max(np.abs(first - second)) > 1e-3  # the trap: the second call started from the first's state
    ours = tflite.interpreter(tflite.convert(lstm).model_content).get_signature_runner("serving_default")
    assert_close(invoke(ours, inputs, None), invoke(ours, inputs, None), 0.0, "second call")


def test_the_cell_clip_is_detected_and_avoided_or_refused():
    """The fused op clips c at +-10: c climbs to `up`, then falls by 1 a step."""
    cell = tfrnn.LSTMCell(UNITS, seed=8)
    rnn = tfrnn.RNN(cell, return_sequences=True)
    rnn.build([None, None, FEATURES])
    kernel = np.zeros([FEATURES, 4 * UNITS], np.float32)
    kernel[0, 2 * UNITS : 3 * UNITS] = 40.0  # feature 0 sets the candidate to +1 or -1
    bias = np.zeros([4 * UNITS], np.float32)
    bias[: 2 * UNITS] = bias[3 * UNITS :] = 20.0  # input, forget and output gates open
    cell.set_weights([kernel, np.zeros([UNITS, 4 * UNITS], np.float32), bias])

    def climb_and_fall(up):
        inputs = np.zeros([1, 2 * up, FEATURES], np.float32)
        inputs[0, :up, 0], inputs[0, up:, 0] = 1.0, -1.0
        return inputs

    below, beyond = climb_and_fall(7), climb_and_fall(14)
    result = tflite.convert(rnn, fuse_lstm="auto", sample_inputs=below)
    assert result.fused_lstms == 1 and 6.5 < max(result.max_abs_cell_state) < 7.5
    assert tflite.fused_cell_clips(result.model_content) == [10.0]
    fused = tflite.interpreter(result.model_content).get_signature_runner("serving_default")
    assert_close(invoke(fused, below, None), rnn(below), 1e-4, "below the clip")
    # Past the clip the fused op forgets what TF remembers: c ends near 0 instead of 4.
    assert np.max(np.abs(invoke(fused, beyond, None) - rnn(beyond).numpy())) > 0.5

    message = "clips the cell state at \\+-10, but on the sample inputs \\|c\\| reaches 14"
    with pytest.raises(ValueError, match=message):
        tflite.convert(rnn, fuse_lstm=True, sample_inputs=beyond)
    result = tflite.convert(rnn, fuse_lstm="auto", sample_inputs=beyond)
    assert result.fused_lstms == 0 and "converted without the fused op" in result.notes[0]
    unfused = tflite.interpreter(result.model_content).get_signature_runner("serving_default")
    assert_close(invoke(unfused, beyond, None), rnn(beyond), 1e-4, "beyond the clip, unfused")


# The fused LSTM op and the builtin WHILE loop (GRU); SimpleRNN takes GRU's path, for time.
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_quantized_models_are_smaller_and_close(kind):
    # Big enough that the weights, not the graph, make most of the file.
    cell = {"lstm": tfrnn.LSTMCell, "gru": tfrnn.GRUCell, "simple": tfrnn.SimpleRNNCell}[kind](96, seed=9)
    rnn = tfrnn.RNN(cell, return_sequences=True)
    rnn.build([None, None, 96])
    inputs = random_array(6, 1, TIME, 96)
    sizes = {}
    for quantize, tolerance in ((None, 1e-4), ("float16", 2e-2), ("dynamic_int8", 1e-1)):
        result = tflite.convert(rnn, quantize=quantize, signatures=["serving_default"])
        sizes[quantize] = len(result.model_content)
        runner = tflite.interpreter(result.model_content).get_signature_runner("serving_default")
        assert_close(invoke(runner, inputs, None), rnn(inputs), tolerance, f"quantize={quantize}")
    assert sizes["float16"] < 0.7 * sizes[None] and sizes["dynamic_int8"] < 0.5 * sizes[None], sizes


def test_a_dynamic_batch_model_runs_resized(lstm):
    result = tflite.convert(lstm, batch_size=None)
    assert result.fused_lstms == 0 and "WHILE" in result.ops
    runner = tflite.interpreter(result.model_content).get_signature_runner("serving_default")
    for batch, time in ((3, TIME), (1, 9)):
        inputs = random_array(batch + time, batch, time, FEATURES)
        assert_close(invoke(runner, inputs, None), lstm(inputs), 1e-4, f"batch {batch}, time {time}")


class ErfCell(tf.Module):
    state_size = UNITS

    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(random_array(7, FEATURES, UNITS))

    def call(self, inputs, states):
        h = tf.math.erf(inputs @ self.kernel + states[0])
        return h, [h]


def test_ops_tflite_lacks_are_named(tmp_path):
    rnn = tfrnn.RNN(ErfCell())
    rnn.build([None, None, FEATURES])
    with pytest.raises(ValueError, match="^the model uses TensorFlow ops that TFLite has no builtin for: Erf\\."):
        tflite.convert(rnn, tmp_path / "model.tflite")
    assert not (tmp_path / "model.tflite").exists()


def test_conversion_from_a_tfrnn_saved_model(lstm, tmp_path):
    export.export_saved_model(lstm, tmp_path / "saved", tflite_batch_size=2)
    result = tflite.convert(str(tmp_path / "saved"), tmp_path / "model.tflite")
    assert result.fused_lstms == 1 and result.signatures == ["serving_default", "step"]
    runner = tflite.interpreter((tmp_path / "model.tflite").read_bytes()).get_signature_runner("serving_default")
    inputs = random_array(8, 2, TIME, FEATURES)
    assert_close(invoke(runner, inputs, None), lstm(inputs), 1e-4)
    with pytest.raises(ValueError, match="already exists; pass overwrite=True"):
        tflite.convert(str(tmp_path / "saved"), tmp_path / "model.tflite")


def test_bad_sources_are_named(lstm, tmp_path):
    with pytest.raises(ValueError, match="is not a SavedModel directory"):
        tflite.convert(str(tmp_path))
    plain = tf.Module()
    plain.f = tf.function(lambda x: {"y": x * 2.0}, input_signature=[tf.TensorSpec([1])])
    tf.saved_model.save(plain, str(tmp_path / "plain"), signatures={"serving_default": plain.f})
    with pytest.raises(ValueError, match="was not exported by tfrnn.export with TFLite functions"):
        tflite.convert(str(tmp_path / "plain"))
    with pytest.raises(ValueError, match="quantize must be one of"):
        tflite.convert(lstm, quantize="int4")
    with pytest.raises(ValueError, match="signatures must be among"):
        tflite.convert(lstm, signatures=["stream"])


GOLDEN = pathlib.Path(__file__).resolve().parent.parent / "saved_models"
GOLDEN_NAMES = sorted(json.loads((GOLDEN / "manifest.json").read_text())["models"])


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_golden_exports_still_convert_from_the_saved_model_alone(name, tmp_path):
    """Exports written before the function set existed (`tflite_<name>` attributes)."""
    with np.load(GOLDEN / name / "io.npz") as data:
        io = {k: data[k] for k in data.files}
    result = tflite.convert(str(GOLDEN / name / "savedmodel"), tmp_path / "model.tflite")
    assert result.fused_lstms == (1 if name == "lstm" else 0), result.ops
    runtime = tflite.interpreter((tmp_path / "model.tflite").read_bytes())
    feed = {k: io[k] for k in ("inputs", "mask") if k in io}
    # The first call starts from the exported states (zeros for the stateful golden).
    outputs = runtime.get_signature_runner("serving_default")(**feed)["outputs"]
    assert_close(outputs, io["serving/outputs"], 1e-4, f"{name} serving_default")
    assert sorted(result.signatures) == sorted(["serving_default", "step"] + (["reset_state"] if name == "stateful" else []))


class _PatchedInterpreter:
    """`tflite.interpreter` whose runner for `signature` returns `change(its real result, call)`."""

    def __init__(self, signature, change):
        self.real, self.signature, self.change = tflite.interpreter, signature, change

    def __call__(self, content):
        runtime = self.real(content)
        real_runner = runtime.get_signature_runner
        calls = []

        def runner(name=None):
            run = real_runner(name)
            if name != self.signature:
                return run

            def changed(**feed):
                calls.append(None)
                return self.change(dict(run(**feed)), len(calls))

            return changed

        runtime.get_signature_runner = runner
        return runtime


def _value_at_call(value, at_call):
    def change(result, call):
        if call == at_call:
            result["outputs"] = result["outputs"].copy()
            result["outputs"].flat[0] = value
        return result

    return change


@pytest.fixture(scope="module")
def stateful_lstm():
    rnn = tfrnn.RNN(tfrnn.LSTMCell(UNITS, seed=13), return_sequences=True, stateful=True)
    rnn(random_array(14, 2, TIME, FEATURES))  # states that are not zeros
    return rnn


@pytest.mark.parametrize(
    "signature, change, message",
    [
        ("serving_default", _value_at_call(np.nan, 1), "serving_default \\(LiteRT vs. TensorFlow, invocation 1\\) failed: output 'outputs' is not finite in LiteRT: NaN at \\[0, 0, 0\\]"),
        ("serving_default", _value_at_call(np.inf, 2), "serving_default \\(LiteRT vs. TensorFlow, invocation 2\\) failed: output 'outputs' is not finite in LiteRT: Inf at \\[0, 0, 0\\]"),
        ("serving_default", lambda result, call: {}, "serving_default \\(LiteRT vs. TensorFlow, invocation 1\\) failed: output 'outputs' is missing from LiteRT's outputs \\[\\]"),
        ("serving_default", lambda result, call: {"outputs": result["outputs"][:, :1]}, "serving_default .* failed: output 'outputs' has shape \\[2, 1, 4\\] in LiteRT, \\[2, 7, 4\\] in TensorFlow"),
        ("step", _value_at_call(np.nan, 3), "step \\(LiteRT vs. TensorFlow, timestep 2\\) failed: output 'outputs' is not finite in LiteRT: NaN at \\[0, 0\\]"),
        ("step", lambda result, call: {k: v for k, v in result.items() if k != "state_1"}, "step \\(LiteRT vs. TensorFlow, timestep 0\\) failed: output 'state_1' is missing from LiteRT's outputs \\['outputs', 'state_0'\\]"),
    ],
    ids=["serving-nan", "serving-inf-second-call", "serving-missing", "serving-shape", "step-nan", "step-missing"],
)
def test_litert_outputs_that_misbehave_fail_the_conversion_and_write_nothing(
    stateful_lstm, tmp_path, monkeypatch, signature, change, message
):
    before = [v.numpy() for v in stateful_lstm.states]
    monkeypatch.setattr(tflite, "interpreter", _PatchedInterpreter(signature, change))
    with pytest.raises(export.CheckFailed, match=f"^TFLite check of {message}; nothing was written"):
        tflite.convert(stateful_lstm, tmp_path / "model.tflite")
    assert os.listdir(tmp_path) == []  # hidden staging files included
    for variable, value in zip(stateful_lstm.states, before):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_a_model_whose_outputs_are_nan_is_not_converted(tmp_path):
    rnn = tfrnn.RNN(tfrnn.GRUCell(UNITS, seed=15), return_sequences=True)
    rnn.build([None, None, FEATURES])
    rnn.cell.bias.assign(np.full(rnn.cell.bias.shape, np.nan, np.float32))
    with pytest.raises(export.CheckFailed, match="output 'outputs' is not finite in TensorFlow: NaN at \\[0, 0, 0\\]; nothing was written"):
        tflite.convert(rnn, tmp_path / "model.tflite")
    assert os.listdir(tmp_path) == []


def test_an_export_without_fusion_converts_unfused_and_says_so(lstm, tmp_path):
    export.export_saved_model(lstm, tmp_path / "saved", tflite_batch_size=2, fuse_lstm=False)
    result = tflite.convert(str(tmp_path / "saved"))
    assert result.fused_lstms == 0 and result.max_abs_error["serving_default"] <= 1e-4
    assert result.notes == [
        "the SavedModel's TFLite functions were exported with fuse_lstm=False: converted without the fused op"
    ]
    with pytest.raises(ValueError, match="exported with fuse_lstm=False; convert with fuse_lstm='auto' or False"):
        tflite.convert(str(tmp_path / "saved"), fuse_lstm=True)
