"""Trains a stateful tfrnn LSTM with MultiWorkerMirroredStrategy across local worker processes.

Run: `python tools/train_multiworker.py [--workers 2] [--steps 30] [--checkpoints DIR]`.

The launcher picks free ports on 127.0.0.1, starts one copy of this script per worker with
its own `TF_CONFIG`, and waits for them (at most `--timeout` seconds). The workers learn to
predict the next value of long sine waves (a different one per row of the batch) that arrive
in chunks of `--time` steps; the LSTM is stateful, so each replica carries the states of its
rows from chunk to chunk. Every worker holds `--global-batch / workers` rows. The workers
checkpoint weights, optimizer and states every `--checkpoint-every` steps
(`tf.train.CheckpointManager`); run the script again with the same `--checkpoints` and it
resumes from the last checkpoint (kill a worker's process to try it).

Uses only tfrnn's public API: `tfrnn.RNN` (its time loop compiled with XLA inside each
replica) under `strategy.scope()`, trained with `strategy.run` and `strategy.reduce`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: quiet C++ logs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: argparse.Namespace) -> int:
    """Starts `args.workers` worker processes on 127.0.0.1 and waits for them."""
    if args.global_batch % args.workers:
        raise SystemExit(
            f"--global-batch ({args.global_batch}) must be a multiple of --workers "
            f"({args.workers}): each worker holds an equal slice of the batch"
        )
    checkpoints = args.checkpoints or tempfile.mkdtemp(prefix="tfrnn_multiworker_")
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(args.workers)]}
    print(f"{args.workers} workers on {', '.join(cluster['worker'])}; checkpoints in {checkpoints}")
    options = [
        f"--{name.replace('_', '-')}={value}"
        for name, value in vars(args).items()
        if name not in ("task", "checkpoints")
    ]
    processes = []
    for task in range(args.workers):
        config = {"cluster": cluster, "task": {"type": "worker", "index": task}}
        command = [sys.executable, os.path.abspath(__file__), f"--task={task}"]
        command += [f"--checkpoints={checkpoints}", *options]
        env = {**os.environ, "TF_CONFIG": json.dumps(config), "CUDA_VISIBLE_DEVICES": ""}
        # The chief reports; the other workers' output would repeat it.
        stdout = None if task == 0 else subprocess.DEVNULL
        processes.append(subprocess.Popen(command, env=env, stdout=stdout))
    deadline = time.time() + args.timeout
    try:
        while any(p.poll() is None for p in processes):
            failed = [p for p in processes if p.returncode not in (None, 0)]
            if failed or time.time() > deadline:
                why = "a worker failed" if failed else f"the workers ran past {args.timeout} s"
                print(f"stopping the workers: {why}", file=sys.stderr)
                return 1
            time.sleep(0.2)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return max(p.returncode for p in processes)


def train(args: argparse.Namespace) -> None:
    """One worker's part of the job (`TF_CONFIG` says which)."""
    import numpy as np
    import tensorflow as tf
    import tf_keras

    import tfrnn

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    replicas = strategy.num_replicas_in_sync
    rows = args.global_batch // replicas
    chief = strategy.cluster_resolver.task_id == 0

    with strategy.scope():
        # Stateful: the states live per replica, [rows, units] each, created here for the
        # global batch (outside strategy.run tfrnn speaks in global batch sizes).
        rnn = tfrnn.RNN(tfrnn.LSTMCell(args.units, seed=1), return_sequences=True, stateful=True)
        rnn.build([args.global_batch, args.time, 1])
        readout = tf.Variable(tf.random.stateless_normal([args.units, 1], [2, 3]) * 0.1, name="readout")
        optimizer = tf_keras.optimizers.Adam(args.learning_rate)
        variables = list(rnn.trainable_variables) + [readout]
        optimizer.build(variables)

    checkpoint = tf.train.Checkpoint(rnn=rnn, readout=readout, optimizer=optimizer)
    # Every worker takes part in saving (the states are gathered from all replicas); only the
    # chief writes where it counts, the others into scratch directories.
    task = strategy.cluster_resolver.task_id
    directory = args.checkpoints if chief else os.path.join(args.checkpoints, f".worker{task}")
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=2)
    latest = tf.train.latest_checkpoint(args.checkpoints)
    if latest is not None:
        checkpoint.restore(latest).assert_consumed()
    start = int(optimizer.iterations.numpy())
    if chief and start:
        print(f"resumed from {latest} at step {start}")

    # Row b of the global batch is a sine wave of its own frequency and phase.
    frequency = np.linspace(0.05, 0.3, args.global_batch, dtype=np.float32)[:, None]
    phase = np.linspace(0.0, np.pi, args.global_batch, dtype=np.float32)[:, None]

    def chunk(step: int):
        """Replica inputs `[rows, time, 1]` and next-value targets of chunk `step`."""
        t = np.arange(step * args.time, (step + 1) * args.time + 1, dtype=np.float32)[None, :]
        wave = np.sin(frequency * t + phase)

        def slice_for(context):
            first = context.replica_id_in_sync_group * rows
            mine = wave[first : first + rows]
            return tf.constant(mine[:, :-1, None]), tf.constant(mine[:, 1:, None])

        return strategy.experimental_distribute_values_from_function(slice_for)

    def replica_step(inputs, targets):
        with tf.GradientTape() as tape:
            predictions = tf.einsum("btu,uo->bto", rnn(inputs), readout)
            per_row = tf.reduce_mean(tf.square(predictions - targets), axis=[1, 2])
            loss = tf.nn.compute_average_loss(per_row, global_batch_size=args.global_batch)
        # apply_gradients all-reduces the gradients across the replicas of every worker.
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    @tf.function
    def train_step(data):
        losses = strategy.run(replica_step, args=data)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    started = time.time()
    for step in range(start, args.steps):
        loss = float(train_step(chunk(step)))
        save = (step + 1) % args.checkpoint_every == 0 or step + 1 == args.steps
        if save:
            manager.save(checkpoint_number=step + 1)  # every worker, see above
        if chief and (step == start or save):
            print(f"step {step + 1}/{args.steps}: loss {loss:.5f}", flush=True)
    if chief:
        print(
            f"trained steps {start + 1}-{args.steps} on {replicas} replicas of {rows} rows "
            f"in {time.time() - started:.1f} s"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes to start")
    parser.add_argument("--steps", type=int, default=30, help="training steps (chunks) in all")
    parser.add_argument("--global-batch", type=int, default=8, help="rows, all workers together")
    parser.add_argument("--time", type=int, default=16, help="timesteps per chunk")
    parser.add_argument("--units", type=int, default=32, help="LSTM units")
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--checkpoints", default=None, help="checkpoint directory (resumes)")
    parser.add_argument("--checkpoint-every", type=int, default=5, help="steps between saves")
    parser.add_argument("--timeout", type=float, default=600, help="seconds before giving up")
    parser.add_argument("--task", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.task is None:
        return launch(args)
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
