"""The child-process side of tests/test_distribute.py: jobs under a strategy, results pickled.

    python tests/distribute_run.py mirrored REPLICAS OUT_DIR
    TF_CONFIG=... python tests/distribute_run.py worker OUT_DIR CHECKPOINTS STEPS PAUSE_AFTER FIT

`mirrored` runs the jobs of `distribute_cases` under MirroredStrategy over REPLICAS
logical CPU devices (the stateless custom loop only for 2), plus the stateful checks
(reset_state, checkpoints, bad input), and
writes `OUT_DIR/mirrored.pkl`. `worker` is one MultiWorkerMirroredStrategy worker of a
stateful job of STEPS steps that checkpoints after every step (CheckpointManager) and resumes
from the last checkpoint; with PAUSE_AFTER > 0, worker 1 stops after that step and waits to be
killed; with FIT = `fit` the workers then also run the stateful `model.fit` job. It writes
`OUT_DIR/worker<task>.pkl`.

Logical devices must be configured before TensorFlow initializes its devices, and a
multi-worker strategy owns its process, so each of these runs in a process of its own.
"""

import os
import pickle
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import distribute_cases as cases  # noqa: E402
import tfrnn  # noqa: E402

G, T, F, U = cases.GLOBAL_BATCH, cases.TIME, cases.FEATURES, cases.UNITS


def _error(fn) -> str:
    """The message of the ValueError `fn` raises (`fn` must raise one)."""
    try:
        fn()
    except ValueError as error:
        return str(error)
    raise AssertionError(f"{fn} raised no ValueError")


def _lstm(stateful=True) -> tfrnn.RNN:
    return tfrnn.RNN(tfrnn.LSTMCell(U), return_sequences=True, stateful=stateful)


def _components(variable) -> list:
    return [c.numpy() for c in variable.distribute_strategy.experimental_local_results(variable)]


def stateful_checks(strategy, job: cases.Job, out_dir: str) -> dict:
    """After `job` trained: a call outside strategy.run, checkpoints, reset_state."""
    rnn = job.model.lower
    result = {}
    # A call in the cross-replica context takes the global batch (gathered states, scattered
    # back after the compiled loop).
    extra = cases.random_array(30, G, T, F)
    with strategy.scope():
        result["global_call"] = job.model(tf.constant(extra)).numpy()
    result["states_after_global_call"] = cases.global_states(rnn)

    # A checkpoint saves the global states and restores each replica's slice.
    path = tf.train.Checkpoint(model=job.model).save(os.path.join(out_dir, "replicas", "ckpt"))
    result["checkpoint"] = path
    rnn.reset_state()
    result["states_after_reset"] = cases.global_states(rnn)
    tf.train.Checkpoint(model=job.model).restore(path).assert_consumed()
    result["states_after_restore"] = cases.global_states(rnn)

    # reset_state(states=...) takes the global batch and gives each replica its slice.
    given = [cases.random_array(31, G, U), cases.random_array(32, G, U)]
    rnn.reset_state(states=given)
    result["reset_given"] = cases.global_states(rnn)
    result["reset_components"] = [_components(v) for v in rnn.states]

    # A single-device checkpoint restores into the replicated states.
    single = cases.TinyModel(stateful=True)
    single.build(G)
    single.lower.reset_state(states=[cases.random_array(33, G, U), cases.random_array(34, G, U)])
    single_path = tf.train.Checkpoint(model=single).save(os.path.join(out_dir, "single", "ckpt"))
    tf.train.Checkpoint(model=job.model).restore(single_path).assert_consumed()
    result["restored_from_single"] = cases.global_states(rnn)
    return result


def first_call_in_replicas(strategy, out_dir: str) -> dict:
    """A stateful RNN whose states are created by its first call, inside strategy.run (in a
    tf.function); the second call runs strategy.run eagerly, where each replica must still
    get its own trace of tfrnn's compiled function (its own components of the variables)."""
    x = cases.random_array(40, 2, G, T, F)
    with strategy.scope():
        rnn = _lstm()
        rnn.cell.build(tf.TensorShape([None, F]))
        weights = [cases.random_array(41 + i, *w.shape) for i, w in enumerate(rnn.cell.weights)]
        rnn.cell.set_weights(weights)

    @tf.function
    def run(inputs):
        return strategy.gather(strategy.run(rnn, args=(inputs,)), axis=0)

    outputs = [run(cases.replica_slices(strategy, x[0])).numpy()]
    eager = strategy.run(rnn, args=(cases.replica_slices(strategy, x[1]),))
    outputs.append(np.concatenate([t.numpy() for t in strategy.experimental_local_results(eager)]))
    result = {
        "outputs": outputs,
        "states": cases.global_states(rnn),
        "component_shape": tuple(strategy.experimental_local_results(rnn.states[0])[0].shape),
    }
    # A checkpoint restored before anything exists waits for the variables: the weights at
    # the first call's build, the states when that call (inside strategy.run) creates them.
    path = tf.train.Checkpoint(rnn=rnn).save(os.path.join(out_dir, "first_call", "ckpt"))
    with strategy.scope():
        fresh = _lstm()
    status = tf.train.Checkpoint(rnn=fresh).restore(path)
    later = cases.random_array(42, G, T, F)
    result["continued"] = run(cases.replica_slices(strategy, later)).numpy()

    @tf.function
    def run_fresh(inputs):
        return strategy.gather(strategy.run(fresh, args=(inputs,)), axis=0)

    result["restored_then_called"] = run_fresh(cases.replica_slices(strategy, later)).numpy()
    status.assert_consumed()
    return result


def bad_input(strategy, out_dir: str) -> dict:
    """Each bad input's message, and whether the states stayed as they were."""
    n = strategy.num_replicas_in_sync
    indivisible = n + n // 2
    per_replica = G // n
    result = {"indivisible": indivisible}
    with strategy.scope():
        rnn = _lstm()
        result["build_indivisible"] = _error(lambda: rnn.build([indivisible, T, F]))
        result["reset_indivisible"] = _error(
            lambda: rnn.reset_state(states=[np.zeros([indivisible, U], np.float32)] * 2)
        )
        result["states_after_indivisible"] = len(rnn.states)

        rnn = _lstm()
        rnn.build([G, T, F])
        rnn.reset_state(states=[cases.random_array(50, G, U), cases.random_array(51, G, U)])
        before = cases.global_states(rnn)
        replica_sized = [np.zeros([per_replica, U], np.float32)] * 2
        result["reset_per_replica"] = _error(lambda: rnn.reset_state(states=replica_sized))
        result["call_replica_batch_outside"] = _error(
            lambda: rnn(tf.constant(cases.random_array(52, per_replica, T, F)))
        )

    whole = cases.random_array(53, G, T, F)
    every_replica_gets_all = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(whole)
    )
    result["call_global_batch_inside"] = _error(
        lambda: tf.function(lambda x: strategy.run(rnn, args=(x,)))(every_replica_gets_all)
    )

    def reset_inside(context_states):
        return strategy.run(lambda s: rnn.reset_state(states=[s, s]), args=(context_states,))

    global_sized = strategy.experimental_distribute_values_from_function(
        lambda context: tf.zeros([G, U])
    )
    result["reset_global_inside"] = _error(lambda: reset_inside(global_sized))
    result["states_unchanged"] = all(
        np.array_equal(a, b) for a, b in zip(before, cases.global_states(rnn))
    )

    outside = _lstm()
    outside.build([G, T, F])
    result["states_created_outside"] = _error(
        lambda: tf.function(lambda x: strategy.run(outside, args=(x,)))(
            cases.replica_slices(strategy, whole)
        )
    )

    # tfrnn.tf_keras: the states wait for the first call inside the replicas, which needs batches
    # of a static size (this dataset may end in a partial batch).
    with strategy.scope():
        model = cases.keras_model(stateful=True)
    x, y = cases.stream()
    unknown = tf.data.Dataset.from_tensor_slices((x.reshape(-1, T, F), y.reshape(-1, 1))).batch(G)
    result["fit_unknown_batch"] = _error(lambda: model.fit(unknown, epochs=1, verbose=0))

    small = cases.TinyModel(stateful=True)
    small.build(G // 2)
    small_path = tf.train.Checkpoint(model=small.lower).save(os.path.join(out_dir, "small", "ckpt"))
    result["restore_other_batch"] = _error(
        lambda: tf.train.Checkpoint(model=rnn).restore(small_path)
    )
    return result


def _train(job: cases.Job) -> dict:
    return job.result([job.step(k) for k in range(cases.STEPS)])


def mirrored(replicas: int, out_dir: str) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    logical = [tf.config.LogicalDeviceConfiguration()] * replicas
    tf.config.set_logical_device_configuration(cpu, logical)
    # One strategy per process: two would share the collective ops' group keys.
    strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    results = {"replicas": strategy.num_replicas_in_sync, "seconds": {}}

    def timed(name, fn):
        started = time.time()
        results[name] = fn()
        results["seconds"][name] = time.time() - started

    if replicas == 2:
        # tfrnn compiling its loops itself (the 4-device run covers the caller's jit instead).
        stateless = cases.Job(strategy, stateful=False, jit_replica=False)
        timed("custom/stateless", lambda: _train(stateless))
        timed("xla/stateless", lambda: cases.xla_report(stateless.concrete_train_step()))
    stateful = cases.Job(strategy, stateful=True, jit_replica=True)
    timed("custom/stateful", lambda: _train(stateful))
    timed("xla/stateful", lambda: cases.xla_report(stateful.concrete_train_step()))
    timed("checks", lambda: stateful_checks(strategy, stateful, out_dir))
    # The fit model has a stateful and a stateless tfrnn.tf_keras layer.
    timed("fit/stateful", lambda: cases.fit(strategy, stateful=True))
    timed("first_call", lambda: first_call_in_replicas(strategy, out_dir))
    timed("bad_input", lambda: bad_input(strategy, out_dir))
    with open(os.path.join(out_dir, "mirrored.pkl"), "wb") as f:
        pickle.dump(results, f)


def worker(out_dir: str, checkpoints: str, steps: int, pause_after: int, fit: bool) -> None:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task = strategy.cluster_resolver.task_id
    job = cases.Job(strategy, stateful=True, jit_replica=True, steps=steps)
    with strategy.scope():
        job.optimizer.build(job.model.weights())
    checkpoint = tf.train.Checkpoint(model=job.model, optimizer=job.optimizer)
    # Every worker saves (the states are gathered from all of them), only the chief into the
    # directory that counts.
    directory = checkpoints if task == 0 else os.path.join(checkpoints, f"worker{task}")
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=2)
    latest = tf.train.latest_checkpoint(checkpoints)
    if latest is not None:
        checkpoint.restore(latest).assert_consumed()
    start = int(job.optimizer.iterations.numpy())
    losses = []
    for k in range(start, steps):
        losses.append(job.step(k))
        manager.save(checkpoint_number=k + 1)
        print(f"step {k + 1}", flush=True)
        if task == 1 and k + 1 == pause_after:
            print("paused", flush=True)
            time.sleep(600)  # until the test kills this process
    result = job.result(losses)
    result["start"] = start
    result["xla"] = cases.xla_report(job.concrete_train_step())
    if fit:
        result["fit/stateful"] = cases.fit(strategy, stateful=True, create_states=True)
        result["keras_control"] = cases.keras_control(strategy)
    with open(os.path.join(out_dir, f"worker{task}.pkl"), "wb") as f:
        pickle.dump(result, f)
    print("done", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "mirrored":
        mirrored(int(sys.argv[2]), sys.argv[3])
    else:
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "fit")
