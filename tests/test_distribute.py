"""tfrnn under tf.distribute: training equals one device; stateful RNNs keep per-replica states.

The strategies run in child processes (`tests/distribute_run.py`): logical CPU devices must be
configured before TensorFlow initializes its devices, which this process has long done, and a
MultiWorkerMirroredStrategy owns its process. Each reference is the same job (same initial
weights, data and global batch, `tests/distribute_cases.py`) trained here on one device.
"""

import json
import os
import pathlib
import pickle
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import distribute_cases as cases
import tfrnn
from tfrnn._core import distribute

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUNNER = ROOT / "tests" / "distribute_run.py"
G, T, F, U = cases.GLOBAL_BATCH, cases.TIME, cases.FEATURES, cases.UNITS
RTOL = 1e-5
WORKER_STEPS, PAUSE_AFTER = 6, 3
LAUNCH_TIMEOUT_S = 150


def relative_error(actual, expected) -> float:
    """max |actual - expected| / max |expected| (0 when both are all zeros)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    error = float(np.max(np.abs(actual - expected))) if expected.size else 0.0
    return error / scale if scale else error


def assert_same_training(actual: dict, expected: dict, what: str) -> float:
    """Losses, weights (and states) agree to RTOL, relative to each tensor's largest entry."""
    keys = ["losses", "weights"] + (["states"] if "states" in expected else [])
    worst = 0.0
    for key in keys:
        pairs = [(actual[key], expected[key])] if key == "losses" else zip(actual[key], expected[key])
        for index, (a, e) in enumerate(pairs):
            error = relative_error(a, e)
            assert error <= RTOL, f"{what}: {key}[{index}] relative error {error:.3g} > {RTOL}"
            worst = max(worst, error)
    print(f"{what}: largest relative difference {worst:.3g}")
    return worst


# -- the child processes ------------------------------------------------------------------------


def _environment(**extra) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _tail(path: pathlib.Path) -> str:
    """The end of a child's log, without TensorFlow's start-up chatter."""
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    kept = [line for line in text if not line.startswith(("I0000", "WARNING: All"))]
    return "\n".join(kept)[-4000:]


@pytest.fixture(scope="module")
def mirrored_runs(tmp_path_factory):
    """`runs(n)`: what `distribute_run.py mirrored n` gave; the 2- and 4-device runs start
    together when the first is asked for (each is mostly TensorFlow's start-up)."""
    started, cache = {}, {}

    def runs(replicas: int) -> dict:
        if not started:
            started.update({n: _MirroredRun(n, tmp_path_factory) for n in (2, 4)})
        if replicas not in cache:
            cache[replicas] = started[replicas].result()
        return cache[replicas]

    yield runs
    for run in started.values():
        run.stop()


@pytest.fixture(params=[2, 4], ids=["2-devices", "4-devices"])
def mirrored(request, mirrored_runs):
    """The results under MirroredStrategy over 2 and over 4 CPU devices."""
    return mirrored_runs(request.param)


class _MirroredRun:
    """`distribute_run.py mirrored <replicas>` in a child process, started at once."""

    def __init__(self, replicas: int, tmp_path_factory):
        self.replicas = replicas
        self.out = tmp_path_factory.mktemp(f"mirrored{replicas}")
        self.log = self.out / "log.txt"
        self.started = time.time()
        with open(self.log, "w") as f:
            self.process = subprocess.Popen(
                [sys.executable, str(RUNNER), "mirrored", str(replicas), str(self.out)],
                env=_environment(), cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
            )

    def result(self) -> dict:
        # Two runs share the machine: each may take up to twice as long as alone.
        returncode = self.process.wait(timeout=2 * LAUNCH_TIMEOUT_S)
        assert returncode == 0, f"mirrored run failed:\n{_tail(self.log)}"
        print(f"MirroredStrategy x{self.replicas} run: {time.time() - self.started:.1f} s")
        with open(self.out / "mirrored.pkl", "rb") as f:
            results = pickle.load(f)
        assert results["replicas"] == self.replicas
        return results

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Workers:
    """Two MultiWorkerMirroredStrategy workers on 127.0.0.1, started and stopped here."""

    def __init__(
        self, out: pathlib.Path, checkpoints: pathlib.Path, pause_after: int = 0, fit: bool = False
    ):
        self.out = out
        ports = [_free_port(), _free_port()]
        cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
        self.logs = [out / f"worker{task}.log" for task in range(2)]
        self.processes = []
        for task in range(2):
            config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": task}})
            command = [sys.executable, str(RUNNER), "worker", str(out), str(checkpoints)]
            command += [str(WORKER_STEPS), str(pause_after), "fit" if fit else "no-fit"]
            with open(self.logs[task], "w") as log:
                self.processes.append(
                    subprocess.Popen(
                        command,
                        env=_environment(TF_CONFIG=config),
                        cwd=ROOT,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        self.deadline = time.time() + LAUNCH_TIMEOUT_S

    def logs_text(self) -> str:
        return "\n".join(f"--- worker {i}:\n{_tail(log)}" for i, log in enumerate(self.logs))

    def wait_for(self, task: int, line: str) -> None:
        """Waits until worker `task` has printed `line`."""
        while line not in self.logs[task].read_text(errors="replace").splitlines():
            if self.processes[task].poll() is not None or time.time() > self.deadline:
                self.kill()
                pytest.fail(f"worker {task} never printed {line!r}:\n{self.logs_text()}")
            time.sleep(0.1)

    def finish(self) -> list[dict]:
        """Waits for both workers to exit cleanly; their results."""
        for process in self.processes:
            try:
                process.wait(timeout=max(1.0, self.deadline - time.time()))
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"the workers did not finish in time:\n{self.logs_text()}")
        codes = [p.returncode for p in self.processes]
        assert codes == [0, 0], f"worker exit codes {codes}:\n{self.logs_text()}"
        results = []
        for task in range(2):
            with open(self.out / f"worker{task}.pkl", "rb") as f:
                results.append(pickle.load(f))
        return results

    def kill(self, task=None) -> None:
        for index, process in enumerate(self.processes):
            if task in (None, index) and process.poll() is None:
                process.kill()
                process.wait(timeout=30)


@pytest.fixture(scope="module")
def multiworker(tmp_path_factory):
    """An uninterrupted 2-worker job, and one whose worker 1 is killed and then resumed."""
    started = time.time()
    base = tmp_path_factory.mktemp("multiworker")
    (base / "whole").mkdir()
    uninterrupted = _Workers(base / "whole", base / "whole_checkpoints", fit=True).finish()
    uninterrupted_s = time.time() - started

    (base / "killed").mkdir()
    checkpoints = base / "killed_checkpoints"
    killed = _Workers(base / "killed", checkpoints, pause_after=PAUSE_AFTER)
    killed.wait_for(1, "paused")
    killed.kill(1)  # worker 1 dies mid-training, with worker 0 inside the next step
    latest = tf.train.latest_checkpoint(str(checkpoints))
    killed.kill()  # both restart from the last checkpoint
    assert not (base / "killed" / "worker0.pkl").exists(), "worker 0 finished without worker 1"
    resumed = _Workers(base / "killed", checkpoints).finish()
    total_s = time.time() - started
    print(f"multi-worker runs: uninterrupted {uninterrupted_s:.1f} s, all {total_s:.1f} s")
    return {"uninterrupted": uninterrupted, "resumed": resumed, "latest_at_kill": latest}


# -- the single-device references (this process) --------------------------------------------


@pytest.fixture(scope="module")
def one_device():
    """Each job of distribute_cases on one device, with what the checks need."""
    strategy = tf.distribute.get_strategy()  # the default strategy: no distribution
    results = {
        "custom/stateless": cases.custom_loop(strategy, stateful=False, jit_replica=False),
        "fit/stateful": cases.fit(strategy, stateful=True),
    }
    job = cases.Job(strategy, stateful=True, jit_replica=True)
    results["custom/stateful"] = job.result([job.step(k) for k in range(cases.STEPS)])
    results["global_call"] = job.model(tf.constant(cases.random_array(30, G, T, F))).numpy()
    results["states_after_global_call"] = cases.global_states(job.model.lower)
    long_job = cases.Job(strategy, stateful=True, jit_replica=True, steps=WORKER_STEPS)
    results["workers"] = long_job.result([long_job.step(k) for k in range(WORKER_STEPS)])
    return results


# -- training under MirroredStrategy equals one device --------------------------------------------


@pytest.mark.parametrize(
    "replicas, kind",
    [
        (2, "custom/stateless"),
        (2, "custom/stateful"),
        (4, "custom/stateful"),
        (2, "fit/stateful"),
        (4, "fit/stateful"),
    ],
)
def test_training_under_mirrored_equals_one_device(mirrored_runs, one_device, replicas, kind):
    """`custom/stateless`: tfrnn compiles its own loops (run on 2 devices, to save time);
    `custom/stateful`: the caller's replica step is one jit_compile function; `fit/stateful`:
    a model with a stateful and a stateless tfrnn.tf_keras layer."""
    assert_same_training(mirrored_runs(replicas)[kind], one_device[kind], f"{kind} x{replicas}")


def test_the_stateful_runs_depend_on_the_carried_states(one_device):
    """Otherwise the stateful comparisons above could not tell whether states carry over."""
    stateful, stateless = one_device["custom/stateful"], one_device["custom/stateless"]
    assert np.abs(stateful["losses"][1:] - stateless["losses"][1:]).max() > 1e-3


def test_fit_reset_states_resets_every_replica(mirrored):
    """Before fit the states wait for the first call inside the replicas (model.reset_states()
    has nothing to do yet); after it, model.reset_states() zeroes every replica's states."""
    assert mirrored["fit/stateful"]["states_before_fit"] == 0
    for state in mirrored["fit/stateful"]["states_after_reset_states"]:
        assert state.shape == (G, U)
        np.testing.assert_array_equal(state, 0.0)


@pytest.mark.parametrize("replicas, kind", [(2, "stateless"), (2, "stateful"), (4, "stateful")])
def test_loops_compile_inside_the_replicas_and_all_reduce_outside(mirrored_runs, replicas, kind):
    """`stateless`: tfrnn compiles its loops; `stateful`: the caller's replica step is one
    `jit_compile` function. Either way every replica runs compiled code, and the gradients'
    all-reduce (CollectiveReduceV2 on CPU) is outside it."""
    report = mirrored_runs(replicas)[f"xla/{kind}"]
    assert report["compiled_functions"] >= replicas
    assert not [op for op in report["ops_inside"] if "Collective" in op or "AllReduce" in op]
    assert "CollectiveReduceV2" in report["ops_outside"]
    assert "While" in report["ops_inside"] or "StatelessWhile" in report["ops_inside"]


# -- stateful RNNs under MirroredStrategy -----------------------------------------------------------


def test_a_call_outside_strategy_run_takes_the_global_batch(mirrored, one_device):
    checks = mirrored["checks"]
    assert relative_error(checks["global_call"], one_device["global_call"]) <= RTOL
    expected_states = one_device["states_after_global_call"]
    for actual, expected in zip(checks["states_after_global_call"], expected_states):
        assert relative_error(actual, expected) <= RTOL


def test_checkpoint_saves_and_restores_every_replicas_states(mirrored):
    checks = mirrored["checks"]
    for reset, restored, saved in zip(
        checks["states_after_reset"], checks["states_after_restore"], checks["states_after_global_call"]
    ):
        np.testing.assert_array_equal(reset, 0.0)
        assert np.abs(saved).max() > 0.1  # a trained state, different in every replica
        np.testing.assert_array_equal(restored, saved)


def test_checkpoint_from_replicas_restores_on_one_device(mirrored):
    checks = mirrored["checks"]
    model = cases.TinyModel(stateful=True)
    model.build(G)
    tf.train.Checkpoint(model=model).restore(checks["checkpoint"]).assert_consumed()
    for variable, expected in zip(model.lower.states, checks["states_after_global_call"]):
        np.testing.assert_array_equal(variable.numpy(), expected)
    for variable, expected in zip(model.weights(), mirrored["custom/stateful"]["weights"]):
        np.testing.assert_array_equal(variable.numpy(), expected)


def test_checkpoint_from_one_device_restores_into_replicas(mirrored):
    expected = [cases.random_array(33, G, U), cases.random_array(34, G, U)]
    for actual, value in zip(mirrored["checks"]["restored_from_single"], expected):
        np.testing.assert_array_equal(actual, value)


def test_reset_state_gives_each_replica_its_slice(mirrored):
    checks, replicas = mirrored["checks"], mirrored["replicas"]
    given = [cases.random_array(31, G, U), cases.random_array(32, G, U)]
    rows = G // replicas
    for state, components, value in zip(checks["reset_given"], checks["reset_components"], given):
        np.testing.assert_array_equal(state, value)
        assert len(components) == replicas
        for replica, component in enumerate(components):
            np.testing.assert_array_equal(component, value[replica * rows : (replica + 1) * rows])


def test_a_first_call_inside_strategy_run_creates_per_replica_states(mirrored):
    """The states take `[global_batch / replicas, units]` per replica; the calls equal one
    device's calls on the global batch."""
    first = mirrored["first_call"]
    assert first["component_shape"] == (G // mirrored["replicas"], U)
    x = cases.random_array(40, 2, G, T, F)
    rnn = tfrnn.RNN(tfrnn.LSTMCell(U), return_sequences=True, stateful=True)
    rnn.cell.build(tf.TensorShape([None, F]))
    rnn.cell.set_weights([cases.random_array(41 + i, *w.shape) for i, w in enumerate(rnn.cell.weights)])
    for k in range(2):
        assert relative_error(first["outputs"][k], rnn(x[k])) <= RTOL
    for actual, variable in zip(first["states"], rnn.states):
        assert relative_error(actual, variable.numpy()) <= RTOL


def test_a_checkpoint_restored_before_the_states_exist_waits_for_them(mirrored):
    """Restored into a fresh RNN before its first call (inside strategy.run), the checkpoint
    gives it the saved weights and per-replica states: it continues as the original does."""
    first = mirrored["first_call"]
    assert relative_error(first["restored_then_called"], first["continued"]) <= RTOL
    assert np.abs(first["continued"]).max() > 0.1


# -- bad input under a strategy: a clear error naming both sizes, nothing changed ----------------


def test_a_global_batch_that_does_not_divide_among_replicas(mirrored):
    bad, replicas = mirrored["bad_input"], mirrored["replicas"]
    n = bad["indivisible"]
    expected = (
        f"a stateful RNN under MirroredStrategy splits its states among {replicas} replicas, "
        f"so its global batch must be a multiple of {replicas}, got a global batch of {n} "
        f"({n} / {replicas} replicas is not a whole per-replica batch)"
    )
    for key in ("build_indivisible", "reset_indivisible"):
        assert bad[key].startswith(expected), bad[key]
    assert bad["states_after_indivisible"] == 0


@pytest.mark.parametrize(
    "key, message",
    [
        (
            "reset_per_replica",
            r"states must have 2 tensors \(h, c\) of shape \[8, 4\], \[8, 4\], got 2 tensors of "
            r"shape \[{P}, 4\], \[{P}, 4\]; the states hold a global batch of 8 \({N} replicas x "
            r"{P} rows\): outside strategy.run they take the global batch, 8, inside it a "
            r"replica's, {P}",
        ),
        (
            "reset_global_inside",
            r"states must have 2 tensors \(h, c\) of shape \[{P}, 4\], \[{P}, 4\], got 2 tensors "
            r"of shape \[8, 4\], \[8, 4\]; the states hold a global batch of 8 \({N} replicas x "
            r"{P} rows\)",
        ),
        (
            "call_replica_batch_outside",
            r"this stateful RNN holds states for a global batch of 8 \({N} replicas x {P} rows\), "
            r"got inputs with batch size {P} outside strategy.run, where a call takes the global "
            r"batch, 8",
        ),
        (
            "call_global_batch_inside",
            r"this stateful RNN holds states for a global batch of 8 \({N} replicas x {P} rows\), "
            r"got inputs with batch size 8 inside strategy.run, where a call takes its replica's "
            r"slice of the batch, {P}",
        ),
        (
            "states_created_outside",
            r"this stateful RNN's states were created outside MirroredStrategy \(for a batch of "
            r"8\), but it is called inside strategy.run on {N} replicas",
        ),
        (
            "fit_unknown_batch",
            r"lstm(_\d+)? is stateful under MirroredStrategy, so its states are created at its "
            r"first call inside the replicas, but that call got batches of unknown size",
        ),
        (
            "restore_other_batch",
            r"the checkpoint holds the state states/h:0 for a global batch of 4, but this RNN "
            r"holds a global batch of 8 \({N} replicas x {P}\)",
        ),
    ],
)
def test_bad_input_under_mirrored(mirrored, key, message):
    replicas = mirrored["replicas"]
    pattern = message.replace("{N}", str(replicas)).replace("{P}", str(G // replicas))
    assert re.search(pattern, mirrored["bad_input"][key]), mirrored["bad_input"][key]


def test_bad_input_leaves_the_states_alone(mirrored):
    assert mirrored["bad_input"]["states_unchanged"]


# -- MultiWorkerMirroredStrategy: 2 worker processes ---------------------------------------------


def test_two_workers_train_as_one_device(multiworker, one_device):
    chief, other = multiworker["uninterrupted"]
    assert chief["start"] == 0 and len(chief["losses"]) == WORKER_STEPS
    assert_same_training(chief, one_device["workers"], "2 workers")
    for a, b in zip(chief["weights"], other["weights"]):
        np.testing.assert_array_equal(a, b)


def test_tf_keras_logs_the_workers_summed_loss_under_multiworker(multiworker):
    """The control for the test below: a plain tf-keras Dense model (no tfrnn) logs, per batch,
    the sum over the 2 workers of the batch's mean loss, twice the loss (NumPy here)."""
    control = multiworker["uninterrupted"][0]["keras_control"]
    prediction = control["x"] @ control["kernel"] + control["bias"]
    loss = float(np.mean((prediction - control["y"]) ** 2))
    assert abs(control["logged_loss"] - 2 * loss) <= RTOL * 2 * loss


def test_fit_on_two_workers_equals_one_device(multiworker, one_device):
    """Weights and states as on one device; the logged losses are tf-keras' sum over the two
    workers (see the control above), so twice one device's."""
    expected = dict(one_device["fit/stateful"], losses=2 * one_device["fit/stateful"]["losses"])
    for task, result in enumerate(multiworker["uninterrupted"]):
        assert_same_training(result["fit/stateful"], expected, f"fit on 2 workers, worker {task}")


def test_two_workers_compile_the_loop_and_all_reduce_across_workers(multiworker):
    report = multiworker["uninterrupted"][0]["xla"]
    assert report["compiled_functions"] >= 1
    assert not [op for op in report["ops_inside"] if "Collective" in op]
    assert "CollectiveReduceV2" in report["ops_outside"]


def test_a_killed_worker_resumes_from_the_last_checkpoint(multiworker):
    """Worker 1 is killed after step 3, worker 0 inside step 4; both restart from the chief's
    last checkpoint and finish with the uninterrupted run's weights and states."""
    assert multiworker["latest_at_kill"].endswith(f"ckpt-{PAUSE_AFTER}")
    resumed, uninterrupted = multiworker["resumed"], multiworker["uninterrupted"]
    for task in range(2):
        assert resumed[task]["start"] == PAUSE_AFTER
        np.testing.assert_allclose(
            resumed[task]["losses"], uninterrupted[task]["losses"][PAUSE_AFTER:], rtol=RTOL
        )
        for key in ("weights", "states"):
            for a, b in zip(resumed[task][key], uninterrupted[task][key]):
                assert relative_error(a, b) <= RTOL, key


# -- in this process: layouts, and strategies with one replica ---------------------------------------


class _FakeStrategy:
    num_replicas_in_sync = 4


def test_replica_layout():
    layout = distribute.ReplicaLayout.of(8, _FakeStrategy(), per_replica=False)
    assert (layout.global_batch, layout.replicas, layout.replica_batch) == (8, 4, 2)
    assert layout.describe() == "global batch of 8 (4 replicas x 2 rows)"
    per_replica = distribute.ReplicaLayout.of(3, _FakeStrategy(), per_replica=True)
    assert (per_replica.global_batch, per_replica.replica_batch) == (12, 3)
    assert distribute.ReplicaLayout.of(6, None, per_replica=False).describe() == "batch of 6"


def test_replica_layout_of_an_indivisible_batch():
    with pytest.raises(ValueError, match=r"splits its states among 4 replicas, so its global "
                       r"batch must be a multiple of 4, got a global batch of 6 .*such as 8"):
        distribute.ReplicaLayout.of(6, _FakeStrategy(), per_replica=False)


def test_one_replica_strategies_keep_plain_state_variables(tmp_path):
    """OneDeviceStrategy has one replica: the states are ordinary variables, as without one."""
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    x = cases.random_array(60, 2, G, T, F)
    with strategy.scope():
        ours = tfrnn.RNN(tfrnn.GRUCell(U), return_sequences=True, stateful=True)
        ours.build([G, T, F])
    assert not any(isinstance(v, tf.distribute.DistributedValues) for v in ours.states)
    reference = tfrnn.RNN(tfrnn.GRUCell(U), return_sequences=True, stateful=True)
    reference.build([G, T, F])
    reference.cell.set_weights(ours.cell.get_weights())
    for k in range(2):
        outputs = strategy.run(tf.function(ours), args=(tf.constant(x[k]),))
        assert relative_error(outputs, reference(x[k])) <= RTOL
    path = tf.train.Checkpoint(rnn=ours).save(str(tmp_path / "ckpt"))
    keys = {name for name, _ in tf.train.list_variables(path)}
    assert "rnn/_state_variables/state_variables/0/.ATTRIBUTES/VARIABLE_VALUE" in keys


# -- the example: tools/train_multiworker.py ---------------------------------------------------------


TOOL = ROOT / "tools" / "train_multiworker.py"


def test_the_multiworker_example_trains(tmp_path):
    """The README's example runs: 2 local workers train and checkpoint. (Resuming is the job
    of the killed-worker test above; a second launch here would cost another 10 s.)"""
    command = [sys.executable, str(TOOL), "--steps", "2", "--checkpoint-every", "2", "--time", "4"]
    command += ["--units", "4", "--checkpoints", str(tmp_path), "--timeout", "120"]
    process = subprocess.run(
        command, env=_environment(), cwd=ROOT, capture_output=True, text=True, timeout=150
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert "step 2/2: loss" in process.stdout and "on 2 replicas of 4 rows" in process.stdout
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-2")


def test_the_multiworker_example_checks_its_batch():
    process = subprocess.run(
        [sys.executable, str(TOOL), "--workers", "3", "--global-batch", "8"],
        env=_environment(), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert process.returncode != 0
    assert "--global-batch (8) must be a multiple of --workers (3)" in process.stderr
