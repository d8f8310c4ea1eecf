"""Models as production has them: fixed windows, several inputs and outputs, lengths, state.

Each model is exported once (module fixture), reloaded in a process without tfrnn that runs
`serving_default` and streams `step` using only the SavedModel's signatures, and converted to
TFLite; every result is compared with the model in memory.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfrnn
import tfrnn.export
import tfrnn.keras
import tfrnn.tf_keras
import tfrnn.tflite
from tfrnn._deploy.model_inputs import ModelInputs
from tfrnn._deploy.signatures import ModelSignatures, TraceOptions

T, F = 5, 3


def _keras_sequential():
    model = keras.Sequential([keras.Input((T, F)), tfrnn.keras.LSTM(4, seed=1), keras.layers.Dense(1)])
    return model, {}


def _tf_keras_sequential():
    tf_keras.utils.set_random_seed(2)
    model = tf_keras.Sequential([tf_keras.Input((T, F)), tfrnn.tf_keras.LSTM(4), tf_keras.layers.Dense(1)])
    return model, {}


class _WithSignature(tf.Module):
    def __init__(self):
        self.rnn = tfrnn.RNN(tfrnn.LSTMCell(4, seed=3))

    @tf.function(input_signature=[tf.TensorSpec([None, T, F], tf.float32)])
    def __call__(self, x):
        return self.rnn(x)


def _sequence_and_side():
    sequence = keras.Input((None, F), name="sequence")
    context = keras.Input((4,), name="context")
    joined = keras.layers.Concatenate()([tfrnn.keras.LSTM(4, seed=4)(sequence), context])
    return keras.Model([sequence, context], keras.layers.Dense(2, name="score")(joined)), {}


def _two_heads():
    sequence = keras.Input((None, F), name="sequence")
    hidden = tfrnn.keras.LSTM(4, seed=5, return_sequences=True)(sequence)
    per_step = keras.layers.Dense(1)(hidden)
    summary = keras.layers.Dense(2)(tfrnn.keras.GRU(3, seed=6)(hidden))
    return keras.Model(sequence, {"per_step": per_step, "summary": summary}), {}


class _TokensAndLengths(tf.Module):
    """Token ids and their lengths; the mask is made inside from the lengths."""

    def __init__(self):
        self.embedding = tf.Variable(np.random.default_rng(7).standard_normal([6, F]).astype(np.float32))
        self.rnn = tfrnn.RNN(tfrnn.LSTMCell(4, seed=8))

    def __call__(self, inputs):
        mask = tf.sequence_mask(inputs["lengths"], tf.shape(inputs["ids"])[1])
        return self.rnn(tf.gather(self.embedding, inputs["ids"]), mask=mask)


TOKEN_SPEC = {"ids": tf.TensorSpec([None, None], tf.int32), "lengths": tf.TensorSpec([None], tf.int32)}


def _stateful_window():
    model = keras.Sequential([
        keras.Input(batch_shape=(2, T, F)),
        tfrnn.keras.LSTM(4, seed=9, stateful=True, return_sequences=True),
        keras.layers.Dense(1),
    ])
    return model, {}


MODELS = {
    # name: (make, export kwargs, exports step, fused LSTMs in TFLite, fixed timesteps)
    "keras_sequential_fixed": (_keras_sequential, {}, True, 1, T),
    "tf_keras_sequential_fixed": (_tf_keras_sequential, {}, True, 1, T),
    "module_input_signature": (lambda: (_WithSignature(), {}), {}, True, 1, T),
    "sequence_and_side": (_sequence_and_side, {}, True, 1, None),
    "two_heads_dict": (_two_heads, {}, True, 1, None),
    "tokens_and_lengths": (lambda: (_TokensAndLengths(), {}), {"input_spec": TOKEN_SPEC, "step": False}, False, 0, None),
    "stateful_window": (_stateful_window, {}, True, 0, T),
}


def _call(model, samples):
    """The model in memory on `{name: array}`, in its own structure (an independent packing)."""
    if isinstance(model, _TokensAndLengths):
        return model({k: tf.constant(v) for k, v in samples.items()})
    if isinstance(model, (keras.Model, tf_keras.Model)) and len(model.inputs) > 1:
        return model([tf.constant(samples[t.name]) for t in model.inputs])
    return model(tf.constant(samples["inputs"]))


def _named(result):
    if isinstance(result, dict):
        return {k: np.asarray(v) for k, v in result.items()}
    return {"outputs": np.asarray(result)}


RELOAD = textwrap.dedent(
    """
    import json, sys
    import numpy as np, tensorflow as tf
    jobs = json.loads(sys.argv[1])
    for job in jobs:
        loaded = tf.saved_model.load(job["dir"])
        feed = dict(np.load(job["samples"]))
        serving = loaded.signatures["serving_default"]
        results = {k: v.numpy() for k, v in serving(**{k: tf.constant(v) for k, v in feed.items()}).items()}
        if "step" in loaded.signatures:
            step = loaded.signatures["step"]
            whole_specs = serving.structured_input_signature[1]
            step_specs = step.structured_input_signature[1]
            timed = [k for k in feed if step_specs[k].shape.rank < whole_specs[k].shape.rank]
            batch, time = feed[timed[0]].shape[:2]
            states = loaded.signatures["initial_state"](batch_size=tf.constant(batch))
            streamed = {}
            for t in range(time):
                step_feed = {k: tf.constant(v[:, t] if k in timed else v) for k, v in feed.items()}
                out = step(**step_feed, **states)
                states = {k: v for k, v in out.items() if k.startswith("state_")}
                for k, v in out.items():
                    streamed.setdefault(k, []).append(v.numpy())
            results.update({"streamed/" + k: np.stack(v, 1) for k, v in streamed.items()})
        np.savez(job["out"], **results)
    assert not any(name.split(".")[0] == "tfrnn" for name in sys.modules), "tfrnn was imported"
    """
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`{name: (model, ExportResult, samples, expected)}`, and each reloaded without tfrnn."""
    root = tmp_path_factory.mktemp("models")
    found, jobs = {}, []
    for name, (make, kwargs, *_) in MODELS.items():
        model, _ = make()
        if name == "stateful_window":
            model(np.zeros([2, T, F], np.float32))
            tfrnn.keras.reset_state(model)
        result = tfrnn.export.export_saved_model(model, root / name, **kwargs)
        samples = tfrnn.export.read_samples(result.path)
        if name == "stateful_window":
            tfrnn.keras.reset_state(model)
        expected = _named(_call(model, samples))
        np.savez(root / f"{name}.samples.npz", **samples)
        jobs.append({"dir": result.path, "samples": str(root / f"{name}.samples.npz"), "out": str(root / f"{name}.out.npz")})
        found[name] = (model, result, samples, expected)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, "-c", RELOAD, json.dumps(jobs)], capture_output=True, text=True, env=env, cwd=root)
    assert run.returncode == 0, run.stderr[-3000:]
    return {name: (*found[name], dict(np.load(root / f"{name}.out.npz"))) for name in MODELS}


@pytest.mark.parametrize("name", list(MODELS))
def test_reloaded_without_tfrnn_equals_the_model_in_memory(exported, name):
    _, result, samples, expected, reloaded = exported[name]
    assert sorted(k for k in reloaded if not k.startswith("streamed/")) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(reloaded[key], value, atol=1e-5, err_msg=key)
    assert result.max_abs_error["serving_default"] <= 1e-5


@pytest.mark.parametrize("name", list(MODELS))
def test_step_streamed_equals_serving_default(exported, name):
    _, result, samples, expected, reloaded = exported[name]
    assert ("step" in result.signatures) == MODELS[name][2]
    if not MODELS[name][2]:
        return
    for key, whole in expected.items():
        streamed = reloaded["streamed/" + key]
        lined_up = streamed if whole.ndim == streamed.ndim else streamed[:, -1]
        np.testing.assert_allclose(lined_up, whole, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("name", list(MODELS))
def test_converts_to_tflite_and_matches_in_litert(exported, name):
    model, result, samples, _, _ = exported[name]
    conversion = tfrnn.tflite.convert(result.path)
    assert conversion.fused_lstms == MODELS[name][3]
    batch = result.metadata["tflite_batch_size"]
    rows = {k: v[:batch] for k, v in samples.items()}
    if name == "stateful_window":
        tfrnn.keras.reset_state(model)
    expected = _named(_call(model, rows))
    runner = tfrnn.tflite.interpreter(conversion.model_content).get_signature_runner("serving_default")
    actual = runner(**rows)
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key], value, atol=1e-4, err_msg=key)
    details = runner.get_input_details()
    for described in result.metadata["inputs"]:
        if described["time_axis"]:  # a fixed window stays fixed, in the export and in TFLite
            assert described["shape"][1] == MODELS[name][4]
            assert details[described["name"]]["shape_signature"][1] == (MODELS[name][4] or -1)


# -- how the inputs are read -------------------------------------------------------------------


class _TwoArguments(tf.Module):
    def __init__(self):
        self.rnn = tfrnn.RNN(tfrnn.GRUCell(2, seed=10))

    @tf.function(input_signature=[tf.TensorSpec([None, None, F]), tf.TensorSpec([None, 2], name="context")])
    def __call__(self, x, side):
        return self.rnn(x) + side


def _dict_inputs():
    sequence, context = keras.Input((None, F), name="s"), keras.Input((2,), name="c")
    out = keras.layers.Add()([tfrnn.keras.SimpleRNN(2, seed=11)(sequence), context])
    return keras.Model({"events": sequence, "profile": context}, out)


@pytest.mark.parametrize(
    "make, input_spec, names, time_axis, positional",
    [
        (lambda: _sequence_and_side()[0], None, ["sequence", "context"], [True, False], False),
        (_dict_inputs, None, ["events", "profile"], [True, False], False),
        (_TwoArguments, None, ["x", "context"], [True, False], True),
        (_TokensAndLengths, TOKEN_SPEC, ["ids", "lengths"], [True, False], False),
        (lambda: _keras_sequential()[0], None, ["inputs"], [True], False),
        (_TokensAndLengths, {"ids": tf.TensorSpec([None, 4], tf.int32), "lengths": tf.TensorSpec([None], tf.int32)},
         ["ids", "lengths"], [True, False], False),
    ],
    ids=["keras-list", "keras-dict", "input-signature", "nested-spec", "single", "fixed-nested-spec"],
)
def test_inputs_are_named_and_split_into_time_axis_and_side_inputs(make, input_spec, names, time_axis, positional):
    signatures = ModelSignatures(make(), input_spec)
    assert signatures.inputs.names == names
    assert [i.time_axis for i in signatures.inputs.inputs] == time_axis
    assert signatures.inputs.positional == positional
    step = signatures.step(TraceOptions(jit_compile=False)).get_concrete_function()
    specs = {spec.name: spec for spec in tf.nest.flatten(step.structured_input_signature)}
    for model_input in signatures.inputs.inputs:  # step drops the time axis of exactly these
        whole = model_input.spec.shape.rank
        assert specs[model_input.name].shape.rank == whole - model_input.time_axis


def _two_list_heads():
    sequence = keras.Input((None, F), name="sequence")
    hidden = tfrnn.keras.LSTM(4, seed=13)(sequence)
    return keras.Model(sequence, [keras.layers.Dense(1, name="score")(hidden), keras.layers.Dense(2, name="logits")(hidden)])


class _ReturnsStates(tf.Module):
    def __init__(self):
        self.rnn = tfrnn.RNN(tfrnn.LSTMCell(3, seed=14), return_state=True)

    def __call__(self, x):
        return self.rnn(x)


@pytest.mark.parametrize(
    "make, names, returns_states",
    [(_two_list_heads, ["score", "logits"], False), (_ReturnsStates, ["outputs"], True)],
    ids=["keras-output-names", "output-and-states"],
)
def test_a_list_result_is_named_heads_or_output_and_states(make, names, returns_states):
    signatures = ModelSignatures(make(), SPEC)
    assert signatures.output_names == names and signatures.returns_states == returns_states
    serving = signatures.serving_default(TraceOptions(jit_compile=False)).get_concrete_function()
    expected = names + (["state_0", "state_1"] if returns_states else [])
    assert sorted(serving.structured_outputs) == sorted(expected)


def test_a_list_of_unnamed_specs_is_numbered():
    inputs = ModelInputs.of(None, [tf.TensorSpec([None, None, F]), tf.TensorSpec([None, 2])])
    assert inputs.names == ["input_0", "input_1"] and inputs.structure == [0, 1]


SPEC = tf.TensorSpec([None, None, F])


@pytest.mark.parametrize(
    "input_spec, error, message",
    [
        ({"ids": [None, None]}, TypeError, r"input_spec\['ids'\]\[0\] must be a tf.TensorSpec \(or a list or dict of them\), got NoneType"),
        ({"mask": SPEC, "x": SPEC}, ValueError, r"input_spec: input name 'mask' is taken by the signatures' own arguments"),
        ({"state_0": SPEC, "x": SPEC}, ValueError, r"input name 'state_0' is taken"),
        ([tf.TensorSpec([None, None, F], name="a"), tf.TensorSpec([None, 2], name="a")], ValueError, r"the inputs' names must differ, got \['a', 'a'\]"),
        ([SPEC, tf.TensorSpec([])], ValueError, r"input_spec 'input_1' must have a batch axis \(\[batch, ...\]\), got shape \(\)"),
        ([SPEC, tf.TensorSpec([None, None, None])], ValueError, r"input_spec 'input_1' must give its feature shape"),
    ],
    ids=["not-a-spec", "reserved-mask", "reserved-state", "duplicate", "no-batch", "no-features"],
)
def test_bad_input_specs_are_named(input_spec, error, message):
    with pytest.raises(error, match=message):
        ModelInputs.of(None, input_spec)


def test_a_spec_nest_the_model_cannot_take_is_named():
    with pytest.raises(ValueError, match=r"the model cannot be called on its inputs \(input_0 \(None, None\) int32, input_1 \(None,\) int32\)"):
        ModelSignatures(_TokensAndLengths(), list(TOKEN_SPEC.values()))


def test_a_mask_argument_needs_a_single_input():
    with pytest.raises(ValueError, match=r"mask=True calls model\(inputs, mask=mask\), but the model takes 2 inputs \['ids', 'lengths'\]; give it its mask as an input"):
        ModelSignatures(_TokensAndLengths(), TOKEN_SPEC, mask=True)


def test_time_axis_inputs_must_agree_on_a_fixed_length():
    model = _TwoArguments()
    spec = [tf.TensorSpec([None, 4, F], name="a"), tf.TensorSpec([None, 5, F], name="b")]
    with pytest.raises(ValueError, match=r"the inputs that feed the RNNs must have the same number of timesteps"):
        ModelSignatures(lambda pair: model.rnn(pair[0]) + model.rnn(pair[1]), spec)


@pytest.mark.parametrize(
    "samples, error, message",
    [
        (np.zeros([2, T, F], np.float32), TypeError, r"sample_inputs must be a dict \{input name: array\} with the keys \['sequence', 'context'\]"),
        ({"sequence": np.zeros([2, T, F], np.float32)}, ValueError, r"sample_inputs must have the keys \['context', 'sequence'\] \(the signature's inputs\), got \['sequence'\]"),
        ({"sequence": np.zeros([2, T, F], np.float32), "context": np.zeros([2, 5], np.float32)}, ValueError, r"sample_inputs\['context'\] must have shape \[None, 4\]"),
    ],
    ids=["array-for-two-inputs", "missing-key", "wrong-shape"],
)
def test_bad_sample_inputs_are_named(tmp_path, samples, error, message):
    with pytest.raises(error, match=message):
        tfrnn.export.export_saved_model(_sequence_and_side()[0], tmp_path / "m", sample_inputs=samples)
    assert os.listdir(tmp_path) == []


def test_a_model_that_cannot_take_one_timestep_is_refused_a_step(tmp_path):
    inputs = keras.Input((None, F))
    hidden = keras.layers.Conv1D(2, 3)(inputs)  # "valid": needs 3 timesteps
    model = keras.Model(inputs, tfrnn.keras.LSTM(2, seed=12)(hidden))
    with pytest.raises(ValueError, match=r"the model cannot be called on one timestep .* so it cannot stream: a layer that mixes timesteps \(e.g. a convolution over time\) needs the whole sequence; export with step=False"):
        tfrnn.export.export_saved_model(model, tmp_path / "m", step=True, tflite_batch_size=None)
    assert os.listdir(tmp_path) == []


def test_a_mask_made_from_lengths_fails_the_step_check_with_its_remedy(tmp_path):
    with pytest.raises(tfrnn.export.CheckFailed, match=r"^export check of step .* failed: .*; nothing was written\. .*a mask made from lengths\) cannot be streamed: export it with step=False$"):
        tfrnn.export.export_saved_model(_TokensAndLengths(), tmp_path / "m", input_spec=TOKEN_SPEC, tflite_batch_size=None)
    assert os.listdir(tmp_path) == []


def test_the_run_tool_streams_side_inputs_whole_and_names_one_given_with_a_time_axis(exported, tmp_path):
    _, result, samples, expected, _ = exported["sequence_and_side"]
    np.savez(tmp_path / "good.npz", **samples)
    np.savez(tmp_path / "bad.npz", sequence=samples["sequence"], context=np.repeat(samples["context"][:, None], T, 1))
    tool = os.path.join(os.path.dirname(__file__), "..", "tools", "run_saved_model.py")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    runs = [
        subprocess.Popen([sys.executable, tool, result.path, "--stream", "--inputs", tmp_path / f"{name}.npz",
                          "--out", tmp_path / f"{name}.out.npz"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
        for name in ("good", "bad")
    ]
    (good, _, good_err), (bad, _, bad_err) = [(p.wait(timeout=300), *p.communicate()) for p in runs]
    assert good == 0, good_err
    np.testing.assert_allclose(np.load(tmp_path / "good.out.npz")["outputs"][:, -1], expected["outputs"], atol=1e-5)
    assert bad == 2
    assert "error: input 'context' is a side input: step takes it whole, [None, 4], but it has shape [2, 5, 4]; only ['sequence'] have a time axis" in bad_err


def test_generated_samples_follow_the_model_shapes_and_take_a_rank_1_integer_side_input_as_lengths():
    signatures = ModelSignatures(_TokensAndLengths(), {"ids": tf.TensorSpec([None, 6], tf.int32), "lengths": TOKEN_SPEC["lengths"]})
    samples = tfrnn.export.sample_inputs_for(signatures, batch=50)
    assert samples["ids"].shape == (50, 6) and set(np.unique(samples["ids"])) <= {0, 1}
    assert samples["lengths"].dtype == np.int32 and samples["lengths"].min() >= 1 and samples["lengths"].max() <= 6
    assert len(set(samples["lengths"])) > 1  # lengths of their own, not one value for every row
