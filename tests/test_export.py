"""export_saved_model: reloaded exports reproduce the model, stream exactly, and write safely."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from tensorflow.core.protobuf import saved_model_pb2

import tfrnn
from tfrnn import export
from conftest import assert_close, random_array, random_mask
from matrix import all_pairs, case_id

BATCH, TIME, FEATURES, UNITS = 2, 5, 3, 4
CELLS = {
    "lstm": lambda: tfrnn.LSTMCell(UNITS, seed=1),
    "gru": lambda: tfrnn.GRUCell(UNITS, seed=2),
    "simple": lambda: tfrnn.SimpleRNNCell(UNITS, seed=3),
    "stacked": lambda: [tfrnn.LSTMCell(UNITS, seed=4), tfrnn.GRUCell(3, seed=5)],
}

MATRIX = all_pairs(
    {
        "cell": tuple(CELLS),
        "return_sequences": (False, True),
        "return_state": (False, True),
        "stateful": (False, True),
        "mask": (False, True),
        "jit_compile": (False, True),
    }
)


def build(case):
    rnn = tfrnn.RNN(
        CELLS[case["cell"]](),
        return_sequences=case["return_sequences"],
        return_state=case["return_state"],
        stateful=case["stateful"],
    )
    rnn.build([BATCH if case["stateful"] else None, None, FEATURES])
    return rnn


def feed(inputs, mask):
    return {"inputs": tf.constant(inputs), **({"mask": tf.constant(mask)} if mask is not None else {})}


def stream(loaded, inputs, mask, num_states):
    states = loaded.signatures["initial_state"](batch_size=tf.constant(inputs.shape[0]))
    outputs = []
    for t in range(inputs.shape[1]):
        step_feed = {"inputs": tf.constant(inputs[:, t]), **states}
        if mask is not None:
            step_feed["mask"] = tf.constant(mask[:, t])
        result = loaded.signatures["step"](**step_feed)
        outputs.append(result.pop("outputs").numpy())
        states = result
    assert len(states) == num_states
    return np.stack(outputs, 1), [states[f"state_{i}"].numpy() for i in range(num_states)]


@pytest.mark.parametrize("case", MATRIX, ids=case_id)
def test_reloaded_export_reproduces_the_model_and_streams_exactly(case, tmp_path):
    rnn = build(case)
    inputs = random_array(0, BATCH, TIME, FEATURES)
    mask = random_mask(1, BATCH, TIME) if case["mask"] else None
    result = export.export_saved_model(
        rnn, tmp_path / "model", mask=case["mask"], jit_compile=case["jit_compile"],
        sample_inputs=inputs, sample_mask=mask, tflite_batch_size=None,
    )
    assert result.max_abs_error["serving_default"] <= 1e-5 and result.max_abs_error["step"] <= 1e-5
    expected = rnn(inputs, mask=mask)  # a stateful RNN starts from the states that were exported
    expected = expected if case["return_state"] else [expected]
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    served = loaded.signatures["serving_default"](**feed(inputs, mask))
    assert_close(served["outputs"], expected[0], 1e-5, "outputs")
    for index, state in enumerate(expected[1:]):
        assert_close(served[f"state_{index}"], state, 1e-5, f"state_{index}")
    if case["stateful"]:
        loaded.signatures["reset_state"]()
        rnn.reset_state()
    whole = rnn(inputs, mask=mask)
    whole = whole[0] if case["return_state"] else whole
    streamed, final_states = stream(loaded, inputs, mask, len(rnn.state_shapes))
    if not case["return_sequences"]:
        # The last unmasked output of each row (masked steps repeat it when the cell outputs h).
        streamed = streamed[:, -1]
    assert_close(streamed, whole, 1e-5, "streamed outputs")


def test_a_stateful_export_leaves_the_states_alone_and_carries_them_after_reloading(tmp_path):
    rnn = tfrnn.RNN(tfrnn.GRUCell(UNITS, seed=6), stateful=True)
    inputs = random_array(2, BATCH, TIME, FEATURES)
    rnn(inputs)
    before = [v.numpy() for v in rnn.states]
    export.export_saved_model(rnn, tmp_path / "model", tflite_batch_size=None)
    for variable, value in zip(rnn.states, before):
        np.testing.assert_array_equal(variable.numpy(), value)
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    serving = loaded.signatures["serving_default"]
    for call in range(2):
        assert_close(serving(inputs=tf.constant(inputs))["outputs"], rnn(inputs), 1e-5, f"call {call}")
    reset = loaded.signatures["reset_state"]()
    np.testing.assert_array_equal(reset["state_0"].numpy(), np.zeros([BATCH, UNITS], np.float32))
    rnn.reset_state()
    assert_close(serving(inputs=tf.constant(inputs))["outputs"], rnn(inputs), 1e-5, "after reset")


def test_a_keras_model_exports_with_its_input_shape(tmp_path):
    inputs = tf_keras.Input((None, FEATURES))
    outputs = tf_keras.layers.Dense(2)(tfrnn.tf_keras.LSTM(UNITS, return_sequences=True, seed=7)(inputs))
    model = tf_keras.Model(inputs, outputs)
    result = export.export_saved_model(model, tmp_path / "model", tflite_batch_size=None)
    assert result.metadata["input_shape"] == [None, None, FEATURES]
    data = random_array(3, BATCH, TIME, FEATURES)
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    assert_close(loaded.signatures["serving_default"](inputs=tf.constant(data))["outputs"], model(data), 1e-5)


def _xla_marked_functions(path):
    meta = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes()).meta_graphs[0]
    functions = meta.graph_def.library.function
    marked = [f for f in functions if f.attr["_XlaMustCompile"].b]
    nodes = [n for f in functions for n in f.node_def if n.attr["_XlaMustCompile"].b]
    return marked + nodes


@pytest.fixture(scope="module")
def lstm_rnn():
    rnn = tfrnn.RNN(tfrnn.LSTMCell(UNITS, seed=8), return_sequences=True, jit_compile=True)
    rnn.build([None, None, FEATURES])
    return rnn


def test_the_default_export_serves_without_xla_and_jit_compile_marks_it(lstm_rnn, tmp_path):
    export.export_saved_model(lstm_rnn, tmp_path / "plain")
    export.export_saved_model(lstm_rnn, tmp_path / "xla", jit_compile=True, tflite_batch_size=None)
    # A stock tensorflow_model_server refuses functions marked _XlaMustCompile.
    assert not _xla_marked_functions(tmp_path / "plain")
    assert _xla_marked_functions(tmp_path / "xla")


def test_warmup_requests_cover_both_signatures(lstm_rnn, tmp_path):
    export.export_saved_model(lstm_rnn, tmp_path / "model", warmup=True, tflite_batch_size=None)
    path = tmp_path / "model" / "assets.extra" / "tf_serving_warmup_requests"
    records = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    assert len(records) == 2
    assert b"serving_default" in records[0] and b"step" in records[1]


def test_an_existing_export_is_replaced_only_with_overwrite(lstm_rnn, tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(ValueError, match="already exists; pass overwrite=True"):
        export.export_saved_model(lstm_rnn, target)
    assert (target / "keep.txt").read_text() == "old"
    export.export_saved_model(lstm_rnn, target, overwrite=True, tflite_batch_size=None)
    assert not (target / "keep.txt").exists() and (target / "saved_model.pb").exists()
    assert sorted(os.listdir(tmp_path)) == ["model"]  # no staging directories left behind


class TimeAverage(tf.Module):
    """Adds the average over time to a stateful RNN's outputs: not streamable step by step."""

    def __init__(self):
        super().__init__()
        self.rnn = tfrnn.RNN(tfrnn.GRUCell(FEATURES, seed=9), return_sequences=True, stateful=True)

    def __call__(self, inputs):
        return self.rnn(inputs) + tf.reduce_mean(inputs, axis=1, keepdims=True)


def test_a_failed_check_writes_nothing_and_leaves_the_states_alone(tmp_path):
    model = TimeAverage()
    inputs = random_array(4, BATCH, TIME, FEATURES)
    model(inputs)
    before = [v.numpy() for v in model.rnn.states]
    with pytest.raises(ValueError, match="^export check of step .* failed: output 'outputs' differs by .*; nothing was written. .* export it with step=False$"):
        export.export_saved_model(model, tmp_path / "model", input_spec=tf.TensorSpec([None, None, FEATURES]))
    assert os.listdir(tmp_path) == []
    for variable, value in zip(model.rnn.states, before):
        np.testing.assert_array_equal(variable.numpy(), value)
    result = export.export_saved_model(
        model, tmp_path / "model", input_spec=tf.TensorSpec([None, None, FEATURES]), step=False,
        tflite_batch_size=None,
    )
    assert result.signatures == ["serving_default", "reset_state"]


@pytest.mark.parametrize(
    "make, kwargs, error, message",
    [
        (lambda: tfrnn.RNN(tfrnn.GRUCell(2)), {}, ValueError, "the RNN is not built"),
        (None, {"input_spec": [None, None, 3]}, TypeError, "input_spec\\[0\\] must be a tf.TensorSpec \\(or a list or dict of them\\), got NoneType None"),
        (None, {"sample_inputs": np.zeros([2, 5, 4], np.float32)}, ValueError, "sample_inputs must have shape \\[None, None, 3\\]"),
        (None, {"mask": True, "sample_mask": np.ones([2, 4], bool)}, ValueError, "sample_mask must have shape \\[2, 7\\]"),
        (lambda: tf.Module(), {}, ValueError, "cannot tell the inputs of Module: it is not a Keras model with known inputs, and its __call__ is not a tf.function with an input_signature"),
    ],
)
def test_bad_arguments_are_named(lstm_rnn, tmp_path, make, kwargs, error, message):
    model = make() if make else lstm_rnn
    with pytest.raises(error, match=message):
        export.export_saved_model(model, tmp_path / "model", **kwargs)
    assert not (tmp_path / "model").exists()


def test_an_export_dir_that_is_a_file_is_refused(lstm_rnn, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        export.export_saved_model(lstm_rnn, tmp_path / "file", overwrite=True)


class _PatchedLoad:
    """`tf.saved_model.load` whose loaded `signature` returns `change(its real result)`."""

    def __init__(self, signature, change):
        self.real_load, self.signature, self.change = tf.saved_model.load, signature, change

    def __call__(self, path, *args, **kwargs):
        loaded = self.real_load(path, *args, **kwargs)
        real = loaded.signatures[self.signature]
        patched = tf.Module()  # keeps `loaded` (and so its variables) alive
        patched.loaded = loaded
        patched.signatures = {**loaded.signatures, self.signature: lambda **feed: self.change(dict(real(**feed)))}
        return patched


def _with_last_value(value):
    def change(result):
        outputs = result["outputs"].numpy().copy()
        outputs.flat[-1] = value
        return {**result, "outputs": tf.constant(outputs)}

    return change


def _without(name):
    return lambda result: {k: v for k, v in result.items() if k != name}


def _truncated_in_time(result):
    return {**result, "outputs": result["outputs"][:, :-1]}


@pytest.fixture(scope="module")
def stateful_lstm():
    rnn = tfrnn.RNN(tfrnn.LSTMCell(UNITS, seed=10), return_sequences=True, return_state=True, stateful=True)
    rnn(random_array(11, BATCH, TIME, FEATURES))  # states that are not zeros
    return rnn


@pytest.mark.parametrize(
    "signature, change, message",
    [
        ("serving_default", _with_last_value(np.nan), "serving_default .* output 'outputs' is not finite in the reloaded SavedModel: NaN at \\[1, 6, 3\\]"),
        ("serving_default", _with_last_value(np.inf), "serving_default .* output 'outputs' is not finite in the reloaded SavedModel: Inf at \\[1, 6, 3\\]"),
        ("serving_default", _without("state_1"), "serving_default .* output 'state_1' is missing from the reloaded SavedModel's outputs \\['outputs', 'state_0'\\]"),
        ("serving_default", _truncated_in_time, "serving_default .* output 'outputs' has shape \\[2, 6, 4\\] in the reloaded SavedModel, \\[2, 7, 4\\] in the model in memory"),
        ("step", _with_last_value(np.nan), "step .* output 'outputs' is not finite in step: NaN at \\[1, 0, 3\\]"),
        ("step", _without("state_1"), "step .* output 'state_1' is missing from step's outputs \\['outputs', 'state_0'\\]"),
    ],
    ids=["serving-nan", "serving-inf", "serving-missing", "serving-shape", "step-nan", "step-missing"],
)
def test_a_reloaded_signature_that_misbehaves_fails_the_export_and_writes_nothing(
    stateful_lstm, tmp_path, monkeypatch, signature, change, message
):
    before = [v.numpy() for v in stateful_lstm.states]
    monkeypatch.setattr(tf.saved_model, "load", _PatchedLoad(signature, change))
    with pytest.raises(export.CheckFailed, match=f"^export check of {message}; nothing was written"):
        export.export_saved_model(stateful_lstm, tmp_path / "model", tflite_batch_size=None)
    assert os.listdir(tmp_path) == []  # hidden staging directories included
    for variable, value in zip(stateful_lstm.states, before):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_a_model_whose_outputs_are_nan_is_not_exported(tmp_path):
    """NaN everywhere agrees with NaN everywhere; `max(0.0, nan)` once called that 0.0."""
    rnn = tfrnn.RNN(tfrnn.GRUCell(UNITS, seed=12), return_sequences=True)
    rnn.build([None, None, FEATURES])
    rnn.cell.bias.assign(np.full(rnn.cell.bias.shape, np.nan, np.float32))
    with pytest.raises(
        export.CheckFailed,
        match="^export check of serving_default .* output 'outputs' is not finite in the model in memory: NaN at \\[0, 0, 0\\]; nothing was written",
    ):
        export.export_saved_model(rnn, tmp_path / "new" / "deeper" / "model")
    assert os.listdir(tmp_path) == []  # the parents it created are gone too


def test_tflite_batch_size_must_be_a_positive_int(lstm_rnn, tmp_path):
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match=f"tflite_batch_size must be a positive int or None, got {bad!r}"):
            export.export_saved_model(lstm_rnn, tmp_path / "model", tflite_batch_size=bad)
    assert os.listdir(tmp_path) == []


def test_a_reloaded_export_fine_tunes_with_the_models_gradients_and_no_warning(tmp_path, caplog):
    rnn = tfrnn.RNN(tfrnn.LSTMCell(UNITS, seed=21), return_sequences=True)
    rnn.build([None, None, FEATURES])
    export.export_saved_model(rnn, tmp_path / "model", tflite_batch_size=None)
    inputs = tf.constant(random_array(22, BATCH, TIME, FEATURES))
    with caplog.at_level("WARNING"):
        loaded = tf.saved_model.load(str(tmp_path / "model"))  # kept: signatures hold weak references
    serving = loaded.signatures["serving_default"]
    assert not [r for r in caplog.records if "custom gradients" in r.getMessage()]
    variables = list(serving.trainable_variables)
    with tf.GradientTape() as tape:
        tape.watch(variables)
        loss = tf.reduce_sum(serving(inputs=inputs)["outputs"] ** 2)
    reloaded = tape.gradient(loss, variables)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(rnn(inputs) ** 2)
    in_memory = dict(zip([v.name for v in rnn.trainable_variables], tape.gradient(loss, rnn.trainable_variables)))
    assert sorted(v.name for v in variables) == sorted(in_memory)
    for variable, gradient in zip(variables, reloaded):
        assert_close(gradient, in_memory[variable.name], 1e-5, variable.name)
