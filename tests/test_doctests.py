"""Every `>>>` example in tfrnn's docstrings runs, and runs again (nothing left behind breaks it).

A conformance test, as Sonnet's `doctest_test.py`: each module's examples run with `tf`, `np`,
`tfrnn`, `keras` and `tf_keras` imported, and each module's examples run twice in a row.
"""

import doctest
import importlib
import pathlib
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfrnn

PACKAGE = pathlib.Path(tfrnn.__file__).parent
MODULES = sorted(
    ".".join(("tfrnn",) + p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
    for p in PACKAGE.rglob("*.py")
    if "__pycache__" not in p.parts
)


def _examples(module):
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [t for t in finder.find(module, module.__name__) if t.examples]


def test_the_examples_are_found():
    found = {
        name: sum(len(t.examples) for t in _examples(importlib.import_module(name))) for name in MODULES
    }
    assert sum(found.values()) >= 26, found
    assert found["tfrnn.rnn"] and found["tfrnn.lstm_cell"] and found["tfrnn.tf_keras.layers"], found
    assert found["tfrnn.keras.layers"] and found["tfrnn.keras.builtin_layers"] and found["tfrnn.keras.models"], found


@pytest.mark.parametrize("name", MODULES)
def test_the_examples_of_a_module_run_twice(name, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where examples' mkdtemp() go
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for attempt in ("first run", "second run"):
        runner, report = doctest.DocTestRunner(optionflags=flags), []
        for test in _examples(module):
            test.globs = {"tf": tf, "np": np, "tfrnn": tfrnn, "keras": keras, "tf_keras": tf_keras}
            runner.run(test, out=report.append)
        result = runner.summarize(verbose=False)
        assert result.failed == 0, f"{name}, {attempt}: {result.failed} of {result.attempted} failed\n" + "".join(report)
