"""tools/benchmark.py: its smallest run (`--smoke`) measures every peer and writes its reports."""

import importlib.util
import json
import math
import pathlib
import sys

import numpy as np
import pytest

TOOL = pathlib.Path(__file__).resolve().parent.parent / "tools" / "benchmark.py"


def _load_tool():
    spec = importlib.util.spec_from_file_location("tfrnn_benchmark_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # autograph looks functions' modules up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tool():
    return _load_tool()


@pytest.fixture(scope="module")
def smoke(tool, tmp_path_factory):
    """One `--smoke` run of the LSTM: `(report, markdown text, chart path)`."""
    work = tmp_path_factory.mktemp("benchmark")
    paths = {name: work / f"benchmark.{name}" for name in ("md", "json", "png")}
    tool.main(["--smoke", "--cells", "lstm", "--markdown", str(paths["md"]),
               "--json", str(paths["json"]), "--chart", str(paths["png"])])  # fmt: skip
    return json.loads(paths["json"].read_text()), paths["md"].read_text(), paths["png"]


def test_every_calling_mode_and_peer_has_a_row(tool, smoke):
    report, _, _ = smoke
    sections = report["cells"]["lstm"]
    shape = str(tool.SMOKE_SHAPE)
    expected = {"tfrnn eager", "tfrnn tf.function", "tfrnn in user jit", "tfrnn no-XLA", "tf-keras",
                "keras3 layer (jit)"}  # fmt: skip
    if tool.torch is not None:
        expected.add("pytorch")
    inference, training = sections["inference"][shape], sections["training"][shape]
    assert expected | {"keras3 predict_on_batch"} <= set(inference)
    assert expected | {"keras3 train_on_batch"} <= set(training)
    # bfloat16 rows for every peer that has them, in the smoke run at inference.
    assert {name + " bf16" for name in expected - {"tfrnn no-XLA"}} <= set(inference)
    for rows in (inference, training):
        for name, row in rows.items():
            assert row["median_ms"] > 0 and math.isfinite(row["median_ms"]), name
            assert row["p10_ms"] <= row["median_ms"] <= row["p90_ms"], name
            tolerance = tool.BF16_TOLERANCE if name.endswith(" bf16") else tool.TOLERANCE
            assert row["max_abs_error_vs_tfrnn"] <= tolerance, name
        assert rows["keras3 layer (jit)"]["speedup_vs_keras3_jit"] == pytest.approx(1.0)


def test_the_limit_is_the_best_float32_rate_of_native_and_xla(smoke):
    limits = smoke[0]["limits"]
    rates = [r for row in limits["gflops"].values() for r in row["float32"].values()]
    assert len(rates) == 2 * len(limits["gflops"]) and min(rates) > 0
    assert limits["best_float32_gflops"] == max(rates)
    assert all(set(row) == {"float32", "bfloat16"} for row in limits["gflops"].values())


def test_markdown_and_chart_are_written(smoke):
    _, text, chart = smoke
    assert "The limit: matmul GFLOP/s" in text and "### LSTM training (2, 3, 4, 5)" in text and "bf16 |" in text
    # Each bfloat16 row gives its float32 twin's time over its own; float32 rows a dash.
    bf16_rows = [line for line in text.splitlines() if line.startswith("| tfrnn tf.function bf16 |")]
    assert bf16_rows and all(line.rstrip(" |").endswith("x") for line in bf16_rows)
    assert [line for line in text.splitlines() if line.startswith("| tfrnn tf.function |")][0].endswith("| - |")
    try:
        import matplotlib  # noqa: F401  (the chart needs the benchmark extra)
    except ImportError:
        assert not chart.exists()
    else:
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("error", [1e-3, float("nan")])
def test_check_rejects_disagreeing_values(tool, error):
    values = {"tfrnn tf.function": np.zeros(3), "peer": np.array([0.0, error, 0.0])}
    with pytest.raises(AssertionError, match="peer disagrees"):
        tool._check(values, "tfrnn tf.function")


def test_check_tolerates_bfloat16_rounding_relative_to_the_magnitude(tool):
    values = {"tfrnn tf.function": np.array([2.0, -1.0]), "peer bf16": np.array([2.05, -1.0])}
    assert tool._check(values, "tfrnn tf.function")["peer bf16"] == pytest.approx(0.05)
    values["peer bf16"] = np.array([2.2, -1.0])
    with pytest.raises(AssertionError, match="peer bf16 disagrees"):
        tool._check(values, "tfrnn tf.function")


def test_bf16_speedup_is_the_float32_twins_time_over_its_own(tool):
    rows = {"tfrnn": {"median_ms": 3.0}, "tfrnn bf16": {"median_ms": 2.0}, "peer bf16": {"median_ms": 1.0}}
    assert tool._bf16_speedup("tfrnn bf16", rows) == "1.50x"
    assert tool._bf16_speedup("tfrnn", rows) == "-" and tool._bf16_speedup("peer bf16", rows) == "-"


def test_each_timed_window_lasts_the_window_and_counts_calls_per_peer(tool):
    """A short call is timed over a window of `WINDOW_S` (a window of one short call measured
    the call right after another peer's), a long one alone, a very short one up to the cap."""
    import time

    def sleeper(seconds):
        return lambda: time.sleep(seconds)

    short = tool._calls_per_window(sleeper(tool.WINDOW_S / 8))
    assert 2 <= short <= 8, short  # 8 calls fill the window; sleeps overshoot under load
    assert tool._calls_per_window(sleeper(tool.WINDOW_S * 2)) == 1
    assert tool._calls_per_window(lambda: None) == tool.MAX_CALLS_PER_WINDOW
    calls = {"a": 0, "b": 0}

    def counted(name):
        def call():
            calls[name] += 1
        return call

    times = tool._interleaved({"a": counted("a"), "b": counted("b")}, repeats=3, inner={"a": 2, "b": 5})
    assert calls == {"a": 6, "b": 15}
    assert {name: len(samples) for name, samples in times.items()} == {"a": 3, "b": 3}
