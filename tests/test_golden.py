"""The golden exports in saved_models/ still load and reproduce their stored outputs.

If one of these fails, a change broke loading or changed the numerics of models users have
already exported. If that is deliberate, regenerate them with
`python tools/regenerate_golden.py --overwrite` and say why in the commit.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfrnn import tflite
from conftest import assert_close

ROOT = pathlib.Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "saved_models"
NAMES = sorted(json.loads((GOLDEN / "manifest.json").read_text())["models"])
REGENERATE = "if the change is deliberate: python tools/regenerate_golden.py --overwrite"


def golden_io(name):
    with np.load(GOLDEN / name / "io.npz") as data:
        return {k: data[k] for k in data.files}


def feed_of(io):
    return {k: io[k] for k in ("inputs", "mask") if k in io}


def expected_of(io, prefix):
    return {k[len(prefix) + 1 :]: v for k, v in io.items() if k.startswith(prefix + "/")}


def assert_reproduces(actual, expected, atol, what):
    assert sorted(actual) == sorted(expected), f"{what}: outputs {sorted(actual)} != {sorted(expected)}"
    for key, value in expected.items():
        error = float(np.max(np.abs(np.asarray(actual[key]) - value)))
        assert error <= atol, f"{what}/{key}: max abs error {error:.3g} > {atol}; {REGENERATE}"


def test_the_manifest_lists_every_golden_and_the_folder_stays_small():
    folders = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir() and p.name != "releases")
    assert folders == NAMES
    size = sum(f.stat().st_size for f in GOLDEN.rglob("*") if f.is_file())
    assert size < 5 * 2**20, f"saved_models/ holds {size / 2**20:.1f} MB"


CHECK_WITHOUT_TFRNN = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'tfrnn':
            raise ImportError('tfrnn is blocked')
sys.meta_path.insert(0, Block())
import numpy as np, tensorflow as tf
root, names = sys.argv[1], sys.argv[2:]
errors = {}
for name in names:
    io = dict(np.load(f'{root}/{name}/io.npz'))
    loaded = tf.saved_model.load(f'{root}/{name}/savedmodel')
    feed = {k: tf.constant(io[k]) for k in ('inputs', 'mask') if k in io}
    calls = ['serving'] + (['serving2'] if 'reset_state' in loaded.signatures else [])
    for prefix in calls:
        result = loaded.signatures['serving_default'](**feed)
        for key, value in result.items():
            errors[f'{name}/{prefix}/{key}'] = float(np.max(np.abs(value.numpy() - io[f'{prefix}/{key}'])))
    if 'reset_state' in loaded.signatures:
        loaded.signatures['reset_state']()
    states = loaded.signatures['initial_state'](batch_size=tf.constant(feed['inputs'].shape[0]))
    outputs = []
    for t in range(feed['inputs'].shape[1]):
        step_feed = {'inputs': feed['inputs'][:, t], **states}
        if 'mask' in feed:
            step_feed['mask'] = feed['mask'][:, t]
        result = loaded.signatures['step'](**step_feed)
        outputs.append(result.pop('outputs').numpy())
        states = result
    errors[f'{name}/step/outputs'] = float(np.max(np.abs(np.stack(outputs, 1) - io['step/outputs'])))
    for key, value in states.items():
        errors[f'{name}/step/{key}'] = float(np.max(np.abs(value.numpy() - io[f'step/{key}'])))
print(json.dumps(errors))
"""


def test_golden_saved_models_reproduce_their_outputs_without_tfrnn():
    process = subprocess.run(
        [sys.executable, "-c", CHECK_WITHOUT_TFRNN, str(GOLDEN), *NAMES],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert process.returncode == 0, f"the goldens no longer load: {process.stderr[-2000:]}; {REGENERATE}"
    errors = json.loads(process.stdout.strip().splitlines()[-1])
    assert {key.split("/")[0] for key in errors} == set(NAMES)
    bad = {k: v for k, v in errors.items() if not v <= 1e-5}
    assert not bad, f"golden SavedModels differ from their stored outputs: {bad}; {REGENERATE}"


@pytest.mark.parametrize("name", NAMES)
def test_golden_tflite_models_reproduce_their_outputs(name):
    io = golden_io(name)
    content = (GOLDEN / name / "model.tflite").read_bytes()
    runtime = tflite.interpreter(content)
    runner = runtime.get_signature_runner("serving_default")
    assert_reproduces(runner(**feed_of(io)), expected_of(io, "serving"), 1e-4, f"{name}.tflite serving")
    if "serving2/outputs" in io:  # stateful: the second call starts from the first one's states
        assert_reproduces(runner(**feed_of(io)), expected_of(io, "serving2"), 1e-4, f"{name}.tflite 2nd call")
        runtime.get_signature_runner("reset_state")()
    step = runtime.get_signature_runner("step")
    expected_step = expected_of(io, "step")
    states = {k: np.zeros_like(v) for k, v in expected_step.items() if k.startswith("state_")}
    outputs = []
    for t in range(io["inputs"].shape[1]):
        step_feed = {"inputs": io["inputs"][:, t], **states}
        if "mask" in io:
            step_feed["mask"] = io["mask"][:, t]
        result = step(**step_feed)
        outputs.append(result.pop("outputs"))
        states = result
    assert_reproduces({"outputs": np.stack(outputs, 1), **states}, expected_step, 1e-4, f"{name}.tflite step")
    if name == "lstm":
        assert tflite.op_counts(content).get(tflite.FUSED_LSTM_OP) == 1


def _regeneration_tool():
    spec = importlib.util.spec_from_file_location("regenerate_golden", ROOT / "tools" / "regenerate_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", NAMES)
def test_the_current_code_with_the_golden_weights_reproduces_them(name):
    io = golden_io(name)
    weights = [io[f"weights/{i}"] for i in range(sum(k.startswith("weights/") for k in io))]
    rnn = _regeneration_tool().build(name, weights)
    mask = io.get("mask")
    expected = expected_of(io, "serving")
    for call, prefix in enumerate(["serving", "serving2"] if rnn.stateful else ["serving"]):
        result = rnn(io["inputs"], mask=mask)
        result = result if isinstance(result, list) else [result]
        expected = expected_of(io, prefix)
        assert_close(result[0], expected["outputs"], 1e-5, f"{name} call {call}: {REGENERATE}")
        for index, state in enumerate(result[1:]):
            assert_close(state, expected[f"state_{index}"], 1e-5, f"{name} state {index}: {REGENERATE}")


RELEASES = GOLDEN / "releases"

LOAD_RELEASE = """
import json, os, sys
import numpy as np
import tf_keras
import tfrnn  # registers the layers: no custom_objects below
folder = sys.argv[1]
io = np.load(os.path.join(folder, 'io.npz'))
report = {}
for name in ('model.keras', 'savedmodel'):
    model = tf_keras.models.load_model(os.path.join(folder, name))
    output = model.predict_on_batch(io['inputs'])
    report[name] = float(np.max(np.abs(output - io['expected'])))
print(json.dumps(report))
"""


def test_tf_keras_models_saved_by_release_0_1_still_load_and_reproduce_their_outputs():
    """A `.keras` file and a tf-keras SavedModel of tfrnn 0.1.0's `tfrnn.keras` layers (the
    stateful GRU's stored states included) load with only `import tfrnn` and match."""
    folder = RELEASES / "tf_keras_v0_1"
    process = subprocess.run(
        [sys.executable, "-c", LOAD_RELEASE, str(folder)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert process.returncode == 0, f"a model saved by tfrnn 0.1.0 no longer loads: {process.stderr[-3000:]}"
    errors = json.loads(process.stdout.strip().splitlines()[-1])
    assert sorted(errors) == ["model.keras", "savedmodel"]
    assert all(error <= 1e-6 for error in errors.values()), errors
