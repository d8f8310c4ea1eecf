"""The command-line tools, run as a user runs them: export, run without tfrnn, convert, errors."""

import importlib
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfrnn
from conftest import assert_close, random_array, random_mask

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
FACTORY = textwrap.dedent(
    """
    import tfrnn

    def build():
        rnn = tfrnn.RNN([tfrnn.GRUCell(4, seed=1), tfrnn.LSTMCell(3, seed=2)], return_sequences=True)
        rnn.build([None, None, 2])
        return rnn
    """
)


NOISE = ("absl::InitializeLog", "oneDNN", "cuda", "XNNPACK", "WARNING")
"""TensorFlow's and LiteRT's C++ log lines, which the tools keep back unless --verbose."""


def assert_quiet(stderr):
    assert not [line for line in stderr.splitlines() if any(word in line for word in NOISE)], stderr


def run_tool(name, *args, cwd=None):
    return subprocess.run(
        [sys.executable, str(TOOLS / f"{name}.py"), *map(str, args)],
        capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300,
    )


def run_tools_in_parallel(commands):
    """`[(tool, args)]` -> completed processes, started together (they are mostly imports)."""
    processes = [
        subprocess.Popen(
            [sys.executable, str(TOOLS / f"{name}.py"), *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        )
        for name, args in commands
    ]
    return [(p.wait(timeout=300), *p.communicate()) for p in processes]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A stacked model exported by the tool from a factory, with weights from a checkpoint."""
    work = tmp_path_factory.mktemp("tools")
    (work / "my_models.py").write_text(FACTORY)
    sys.path.insert(0, str(work))
    try:
        import my_models
    finally:
        sys.path.remove(str(work))
    model = my_models.build()
    weights = model.cell.cells[0].get_weights()
    model.cell.cells[0].set_weights([w + 0.25 for w in weights])  # the checkpoint differs from the seeds
    prefix = tf.train.Checkpoint(model=model).write(str(work / "ckpt" / "model"))
    process = run_tool(
        "export_savedmodel", "--factory", "my_models:build", "--checkpoint", prefix,
        "--out", work / "export" / "1", "--warmup", cwd=work,
    )
    assert process.returncode == 0, process.stderr
    return work, model, process.stdout


def test_the_export_tool_reports_its_checks(exported):
    work, _, stdout = exported
    assert "signatures: serving_default, step, initial_state" in stdout
    assert "max abs error (serving_default):" in stdout and "max abs error (step):" in stdout
    assert (work / "export" / "1" / "assets.extra" / "tf_serving_warmup_requests").exists()


def test_the_export_runs_where_tfrnn_cannot_be_imported(exported):
    work, model, _ = exported
    inputs = random_array(0, 3, 6, 2)
    np.savez(work / "inputs.npz", inputs=inputs)
    served, streamed = run_tools_in_parallel(
        [
            ("run_saved_model", [work / "export" / "1", "--inputs", work / "inputs.npz", "--out", work / "served.npz"]),
            ("run_saved_model", [work / "export" / "1", "--stream", "--inputs", work / "inputs.npz", "--out", work / "streamed.npz"]),
        ]
    )
    assert served[0] == 0 and streamed[0] == 0, served[2] + streamed[2]
    assert_quiet(served[2] + streamed[2])
    expected = model(inputs)
    assert_close(np.load(work / "served.npz")["outputs"], expected, 1e-5, "serving_default")
    assert_close(np.load(work / "streamed.npz")["outputs"], expected, 1e-5, "step, streamed")


def test_the_tfrnn_import_is_really_blocked(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(
        f"import runpy, sys\nsys.argv = ['run_saved_model.py', '--help']\n"
        f"try:\n    runpy.run_path({str(TOOLS / 'run_saved_model.py')!r}, run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "try:\n    import tfrnn\nexcept ImportError as e:\n    print('blocked:', e)\n"
    )
    process = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=ENV, timeout=120)
    assert "blocked: tfrnn is blocked" in process.stdout, process.stdout + process.stderr


def test_the_convert_tool_writes_a_checked_tflite_model(exported):
    work, model, _ = exported
    process = run_tool("convert_tflite", work / "export" / "1", work / "model.tflite", "--quantize", "none")
    assert process.returncode == 0, process.stderr
    assert_quiet(process.stderr)
    assert "ops: " in process.stdout and "WHILE" in process.stdout
    assert "max abs error (serving_default, LiteRT vs. TensorFlow)" in process.stdout
    inputs = random_array(1, 1, 6, 2)
    np.save(work / "lite_inputs.npy", inputs)
    # LiteRT alone, in a process without TensorFlow or tfrnn, as on a device.
    script = (
        "import sys, numpy as np\n"
        "sys.modules['tfrnn'] = sys.modules['tensorflow'] = None\n"
        "from ai_edge_litert.interpreter import Interpreter\n"
        f"runner = Interpreter(model_path={str(work / 'model.tflite')!r}).get_signature_runner('serving_default')\n"
        f"np.save({str(work / 'lite_outputs.npy')!r}, runner(inputs=np.load({str(work / 'lite_inputs.npy')!r}))['outputs'])\n"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert_close(np.load(work / "lite_outputs.npy"), model(inputs), 1e-4, "LiteRT")


@pytest.mark.parametrize("flavour", ["tf_keras", "keras"])
def test_a_keras_model_file_exports_and_saved_model_cli_reads_it(tmp_path, flavour):
    """A `.keras` file of either Keras: `tfrnn.tf_keras` or `tfrnn.keras` layers."""
    keras_module = importlib.import_module(flavour)
    tokens = keras_module.Input((None,), dtype="int32")
    hidden = keras_module.layers.Embedding(9, 3, mask_zero=True)(tokens)
    model = keras_module.Model(tokens, getattr(tfrnn, flavour).LSTM(4, seed=3)(hidden))
    model.save(tmp_path / "model.keras")
    process = run_tool("export_savedmodel", "--model", tmp_path / "model.keras", "--out", tmp_path / "export")
    assert process.returncode == 0, process.stderr
    data = np.array([[1, 2, 3, 0], [4, 5, 0, 0]], np.int32)
    np.save(tmp_path / "tokens.npy", data)
    cli = str(pathlib.Path(sys.executable).parent / "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", str(tmp_path / "export"), "--all"], capture_output=True, text=True, env=ENV, timeout=300)
    assert "signature_def['step']" in shown.stdout and "inputs['state_1']" in shown.stdout, shown.stderr
    ran = subprocess.run(
        [cli, "run", "--dir", str(tmp_path / "export"), "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"inputs={tmp_path / 'tokens.npy'}", "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, env=ENV, timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    assert_close(np.load(tmp_path / "out" / "outputs.npy"), model(data), 1e-5, "saved_model_cli run")


def run_tool_in_process(name, args, capfd):
    """`(code, stdout, stderr)` of the tool's `main(argv)` here: the exit status `__main__` exits
    with, without a fresh Python (and TensorFlow) per bad input."""
    code = importlib.import_module(f"tfrnn_tools.{name}").main([str(a) for a in args])
    return (code, *capfd.readouterr())


def test_bad_input_gets_one_line_and_exit_code_2(exported, tmp_path, capfd):
    work, _, _ = exported
    export_dir = work / "export" / "1"
    np.savez(tmp_path / "wrong.npz", inputs=np.zeros([2, 5, 7], np.float32))
    np.savez(tmp_path / "misnamed.npz", x=np.zeros([2, 5, 2], np.float32))
    (tmp_path / "exists.tflite").write_bytes(b"keep")
    # run_saved_model blocks `import tfrnn` in its process, so it runs as its own process (which
    # also checks a real exit status and stderr); the others run their main() here.
    in_process = [
        (("export_savedmodel", ["--factory", "my_models:build", "--out", export_dir]), "already exists; pass --overwrite"),
        (("export_savedmodel", ["--model", tmp_path / "missing.keras", "--out", tmp_path / "e"]), "does not exist"),
        (("convert_tflite", [tmp_path, tmp_path / "m.tflite"]), "is not a SavedModel directory"),
        (("convert_tflite", [export_dir, tmp_path / "exists.tflite"]), "already exists; pass overwrite=True"),
        (("regenerate_golden", ["--only", "lstm"]), "change only deliberately: pass --overwrite"),
    ]
    in_processes = [
        (("run_saved_model", [tmp_path / "nothing"]), "is not a SavedModel directory"),
        (("run_saved_model", [export_dir, "--signature", "predict"]), "unknown signature 'predict'"),
        (("run_saved_model", [export_dir, "--inputs", tmp_path / "wrong.npz"]), "must have shape [None, None, 2]"),
        (("run_saved_model", [export_dir, "--inputs", tmp_path / "misnamed.npz"]), "takes inputs ['inputs'], got ['x']"),
    ]
    results = run_tools_in_parallel([command for command, _ in in_processes])
    results += [run_tool_in_process(*command, capfd) for command, _ in in_process]
    for (command, message), (code, stdout, stderr) in zip(in_processes + in_process, results, strict=True):
        lines = stderr.strip().splitlines()
        assert code == 2, (command, stdout, stderr)
        assert lines and lines[-1].startswith("error: ") and message in lines[-1], (command, stderr)
    assert (tmp_path / "exists.tflite").read_bytes() == b"keep"
    assert not (tmp_path / "e").exists()
