"""The public facade: `import tfrnn` is light, its names resolve, the rest loads on first use."""

import json
import os
import subprocess
import sys

import pytest

import tfrnn

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

IMPORTED = "--- import tfrnn done"

WHAT_IMPORT_TFRNN_ADDS = f"IMPORTED = {IMPORTED!r}\n" + """
import json, sys
import tensorflow  # imports Keras 3 itself (tf.keras is Keras 3 in TF 2.21)
before = set(sys.modules)
import tfrnn
added = sorted(set(sys.modules) - before)
print(IMPORTED, file=sys.stderr, flush=True)  # -X importtime lines above this are import tfrnn's
report = {"added": added}
import keras  # already loaded by TensorFlow, so tfrnn.keras came with import tfrnn
report["keras_registered"] = keras.saving.get_registered_object("tfrnn>LSTM").__module__
tfrnn.export  # loads on first use
report["after_export"] = sorted(m for m in sys.modules if m.startswith("tfrnn.") and m not in added)
import tf_keras  # the tf-keras adapter comes with it, so its layers are registered
report["registered"] = tf_keras.saving.get_registered_object("tfrnn>LSTM").__module__
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def fresh_import():
    """One child process for both import tests (a fresh Python with TensorFlow costs seconds)."""
    command = [sys.executable, "-X", "importtime", "-c", WHAT_IMPORT_TFRNN_ADDS]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_import_tfrnn_loads_no_tf_keras_litert_export_or_tflite_code_and_no_new_keras_module(fresh_import):
    report = json.loads(fresh_import.stdout.strip().splitlines()[-1])
    # Keras 3 is TensorFlow's: the Keras 3 adapter registers its layers at import tfrnn, and
    # loads no Keras module TensorFlow had not loaded already.
    heavy = ("tf_keras", "keras", "ai_edge_litert", "tfrnn.export", "tfrnn.tflite", "tfrnn._deploy", "tfrnn.tf_keras")
    loaded = [m for m in report["added"] if m in heavy or m.startswith(tuple(h + "." for h in heavy))]
    assert loaded == [], loaded
    assert "tfrnn.keras.layers" in report["added"]
    assert report["keras_registered"] == "tfrnn.keras.builtin_layers"
    assert {"tfrnn.export", "tfrnn._deploy.signatures"} <= set(report["after_export"])
    assert report["registered"] == "tfrnn.tf_keras.layers"


def test_importtime_shows_no_tf_keras_or_litert(fresh_import):
    lines = fresh_import.stderr.splitlines()
    assert IMPORTED in lines, fresh_import.stderr[-3000:]
    lines = lines[: lines.index(IMPORTED)]  # what the child imports later (tf_keras) is not tfrnn's
    modules = [line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")]
    assert any(m.startswith("tfrnn") for m in modules)
    assert not [m for m in modules if m.split(".")[0] in ("tf_keras", "ai_edge_litert")]


def test_every_public_name_resolves():
    for name in tfrnn.__all__:
        assert getattr(tfrnn, name) is not None, name
    assert set(tfrnn.__all__) <= set(dir(tfrnn))
    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        tfrnn.no_such_thing  # noqa: B018
