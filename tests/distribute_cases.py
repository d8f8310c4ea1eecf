"""Tiny training jobs that run the same on one device and under a `tf.distribute` strategy.

`tests/test_distribute.py` runs each job once on one device in its own process (the reference)
and under `MirroredStrategy` / `MultiWorkerMirroredStrategy` in child processes
(`tests/distribute_run.py`), and compares losses, weights and states. The jobs take their
weights and data from NumPy with fixed seeds, so every process builds the same ones.

Rows of the global batch go to replicas in contiguous slices (replica `r` gets rows
`[r * per_replica, (r + 1) * per_replica)`), the layout tfrnn's replicated states assume.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras

import tfrnn

GLOBAL_BATCH, TIME, FEATURES, UNITS = 8, 4, 3, 4
STEPS = 3
LEARNING_RATE = 0.05


def adam():
    # The updates need no XLA here; compiling one per variable and device would dominate.
    return tf_keras.optimizers.Adam(LEARNING_RATE, jit_compile=False)


def random_array(seed, *shape):
    return np.random.RandomState(seed).standard_normal(shape).astype(np.float32)


class TinyModel(tf.Module):
    """A stateful-or-not LSTM (the fused loop) under a GRU in StackedRNNCells (the generic
    loop with its recompute gradient), and a linear read-out: `[batch, time, features]` ->
    `[batch, 1]`."""

    def __init__(self, stateful: bool):
        super().__init__(name="tiny")
        self.lower = tfrnn.RNN(tfrnn.LSTMCell(UNITS), return_sequences=True, stateful=stateful)
        self.upper = tfrnn.RNN(tfrnn.StackedRNNCells([tfrnn.GRUCell(UNITS)]))
        self.kernel = tf.Variable(random_array(90, UNITS, 1) * 0.5, name="kernel")
        self.bias = tf.Variable(tf.zeros([1]), name="bias")

    def build(self, batch: int) -> None:
        """Creates every variable (call in the cross-replica context: the global batch)."""
        self.lower.build([batch, TIME, FEATURES])
        self.upper.build([batch, TIME, UNITS])
        for index, variable in enumerate(self.weights()):
            variable.assign(random_array(100 + index, *variable.shape) * 0.5)

    def weights(self) -> list[tf.Variable]:
        return list(self.lower.cell.weights) + list(self.upper.cell.cells[0].weights) + [
            self.kernel,
            self.bias,
        ]

    def __call__(self, inputs):
        return self.upper(self.lower(inputs)) @ self.kernel + self.bias


def stream(steps: int = STEPS) -> tuple[np.ndarray, np.ndarray]:
    """`steps` consecutive chunks of one sequence per row: `x [steps, batch, time, features]`
    (chunk `k` is timesteps `[k * TIME, (k + 1) * TIME)` of the sequence) and `y [steps,
    batch, 1]`."""
    sequence = random_array(7, GLOBAL_BATCH, steps * TIME, FEATURES)
    x = np.stack([sequence[:, k * TIME : (k + 1) * TIME] for k in range(steps)])
    return x, random_array(8, steps, GLOBAL_BATCH, 1)


def replica_slices(strategy: tf.distribute.Strategy, array: np.ndarray):
    """Each replica's contiguous slice of the global batch (the default strategy: all of it)."""
    per_replica = array.shape[0] // strategy.num_replicas_in_sync

    def slice_for(context):
        start = context.replica_id_in_sync_group * per_replica
        return tf.constant(array[start : start + per_replica])

    return strategy.experimental_distribute_values_from_function(slice_for)


def make_train_step(model: TinyModel, optimizer, strategy, jit_replica: bool):
    """One step of a custom loop: `strategy.run` of the replica step, `strategy.reduce`.

    With `jit_replica` the replica's forward and backward pass is one XLA-compiled function
    (tfrnn's loop inside the caller's `jit_compile`), and the gradients' all-reduce happens
    after it, in `apply_gradients`; without it tfrnn compiles its loops itself.
    """
    variables = model.weights()

    def loss_and_gradients(x, y):
        with tf.GradientTape() as tape:
            per_example = tf.reduce_mean(tf.square(model(x) - y), axis=1)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=GLOBAL_BATCH)
        return loss, tape.gradient(loss, variables)

    if jit_replica:
        loss_and_gradients = tf.function(loss_and_gradients, jit_compile=True)

    def replica_step(x, y):
        loss, gradients = loss_and_gradients(x, y)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss

    @tf.function
    def train_step(x, y):
        losses = strategy.run(replica_step, args=(x, y))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return train_step


def global_states(rnn: tfrnn.RNN) -> list[np.ndarray]:
    """A stateful RNN's states for the whole global batch (gathered across replicas)."""
    values = []
    for variable in rnn.states:
        strategy = variable.distribute_strategy if hasattr(variable, "distribute_strategy") else None
        if strategy is not None and isinstance(variable, tf.distribute.DistributedValues):
            values.append(strategy.gather(variable, axis=0).numpy())
        else:
            values.append(variable.numpy())
    return values


class Job:
    """A `TinyModel` with its Adam optimizer and train step under `strategy` (built in its
    scope for the global batch, with the fixed initial weights)."""

    def __init__(self, strategy, stateful: bool, jit_replica: bool, steps: int = STEPS):
        self.strategy = strategy
        with strategy.scope():
            self.model = TinyModel(stateful)
            self.model.build(GLOBAL_BATCH)
            self.optimizer = adam()
        self.train_step = make_train_step(self.model, self.optimizer, strategy, jit_replica)
        self.x, self.y = stream(steps)

    def step(self, k: int) -> float:
        """Trains on chunk `k` of the stream; the global loss."""
        x = replica_slices(self.strategy, self.x[k])
        y = replica_slices(self.strategy, self.y[k])
        return float(self.train_step(x, y))

    def concrete_train_step(self):
        x = replica_slices(self.strategy, self.x[0])
        y = replica_slices(self.strategy, self.y[0])
        return self.train_step.get_concrete_function(x, y)

    def result(self, losses) -> dict:
        result = {"losses": np.array(losses), "weights": [v.numpy() for v in self.model.weights()]}
        if self.model.lower.stateful:
            result["states"] = global_states(self.model.lower)
        return result


def custom_loop(strategy, stateful: bool, jit_replica: bool, steps: int = STEPS) -> dict:
    """Trains a fresh `TinyModel` for `steps` steps; returns losses, weights (and states)."""
    job = Job(strategy, stateful, jit_replica, steps)
    return job.result([job.step(k) for k in range(steps)])


# -- model.fit -----------------------------------------------------------------------------------


def keras_model(stateful: bool) -> tf_keras.Model:
    """A tfrnn.tf_keras LSTM (stateful or not) under a GRU and a Dense, with fixed weights."""
    inputs = tf_keras.Input((TIME, FEATURES), batch_size=GLOBAL_BATCH)
    hidden = tfrnn.tf_keras.LSTM(UNITS, return_sequences=True, stateful=stateful)(inputs)
    hidden = tfrnn.tf_keras.GRU(UNITS)(hidden)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(1)(hidden))
    model.set_weights([random_array(200 + i, *w.shape) * 0.5 for i, w in enumerate(model.weights)])
    model.compile(adam(), loss="mse")
    return model


class _BatchLosses(tf_keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


def fit(
    strategy,
    stateful: bool,
    steps: int = STEPS,
    per_replica_datasets: bool = False,
    create_states: bool = False,
) -> dict:
    """`model.fit` on `steps` consecutive chunks (one epoch, in order); losses and weights.

    The data is one dataset of global batches (Keras splits each among the replicas), or with
    `per_replica_datasets` one dataset per input pipeline, of per-replica batches of a static
    size (`strategy.distribute_datasets_from_function`). With `create_states` the stateful
    layer's states are created before `fit`, by `reset_states(states=...)` with the global
    batch, which MultiWorkerMirroredStrategy needs: its replicas get batches of unknown
    static size, from which the first call cannot create them.
    """
    x, y = stream(steps)
    if per_replica_datasets:

        def dataset_fn(context):
            rows = context.get_per_replica_batch_size(GLOBAL_BATCH)
            local = context.num_replicas_in_sync // context.num_input_pipelines
            replicas = [context.input_pipeline_id * local + j for j in range(local)]
            # Element i of a pipeline goes to its local replica i % local.
            pieces = [(k, r) for k in range(steps) for r in replicas]
            xs = np.stack([x[k, r * rows : (r + 1) * rows] for k, r in pieces])
            ys = np.stack([y[k, r * rows : (r + 1) * rows] for k, r in pieces])
            return tf.data.Dataset.from_tensor_slices((xs, ys))

        dataset = strategy.distribute_datasets_from_function(dataset_fn)
    else:
        dataset = tf.data.Dataset.from_tensor_slices(
            (x.reshape(-1, TIME, FEATURES), y.reshape(-1, 1))
        ).batch(GLOBAL_BATCH, drop_remainder=True)
        options = tf.data.Options()
        # Every worker reads all the data and keeps its replicas' slices of each batch.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
    with strategy.scope():
        model = keras_model(stateful)
        if stateful and create_states:
            model.layers[1].reset_states(states=[np.zeros([GLOBAL_BATCH, UNITS], np.float32)] * 2)
    # Before the first call under a strategy the states may not exist yet: nothing to reset.
    model.reset_states()
    # As in tf-keras, `states` holds a None for each state not created yet.
    states_before_fit = sum(state is not None for state in model.layers[1].states)
    recorder = _BatchLosses()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0, callbacks=[recorder])
    result = {"losses": np.array(recorder.losses), "weights": model.get_weights()}
    result["states_before_fit"] = states_before_fit
    if stateful:
        result["states"] = global_states(model.layers[1])
        model.reset_states()
        result["states_after_reset_states"] = global_states(model.layers[1])
    return result


# -- where XLA compiles ---------------------------------------------------------------------------


def _called_functions(nodes) -> set:
    """Names of the functions that `nodes` call (call ops, while/if bodies, ...)."""
    names = set()
    for node in nodes:
        for value in node.attr.values():
            if value.HasField("func"):
                names.add(value.func.name)
            names.update(f.name for f in value.list.func)
    return names


def xla_report(concrete_function) -> dict:
    """Which ops of a traced train step run inside XLA-compiled functions, which outside.

    Returns `{"compiled_functions": how many functions carry `_XlaMustCompile`,
    "ops_inside": sorted op types in them and everything they call, "ops_outside": the
    op types of the rest of the graph}`.
    """
    graph_def = concrete_function.graph.as_graph_def()
    library = {f.signature.name: f for f in graph_def.library.function}
    roots = {name for name, f in library.items() if f.attr["_XlaMustCompile"].b}
    for f in list(library.values()) + [graph_def]:
        nodes = f.node_def if hasattr(f, "node_def") else f.node
        for node in nodes:
            if node.attr["_XlaMustCompile"].b:
                roots.update(_called_functions([node]))
    inside, frontier = set(), set(roots)
    while frontier:
        name = frontier.pop()
        if name in inside or name not in library:
            continue
        inside.add(name)
        frontier |= _called_functions(library[name].node_def)
    ops_inside = {n.op for name in inside for n in library[name].node_def}
    ops_outside = {n.op for n in graph_def.node} | {
        n.op for name, f in library.items() if name not in inside for n in f.node_def
    }
    return {
        "compiled_functions": len(roots),
        "ops_inside": sorted(ops_inside),
        "ops_outside": sorted(ops_outside),
    }


def keras_control(strategy) -> dict:
    """A plain tf-keras Dense model's `fit` loss log for one batch (no tfrnn in it): the
    control that tells tf-keras' loss logging apart from tfrnn's training."""
    x, y = random_array(70, GLOBAL_BATCH, FEATURES), random_array(71, GLOBAL_BATCH, 1)
    kernel, bias = random_array(72, FEATURES, 1), random_array(73, 1)
    with strategy.scope():
        model = tf_keras.Sequential([tf_keras.Input((FEATURES,)), tf_keras.layers.Dense(1)])
        model.set_weights([kernel, bias])
        model.compile(tf_keras.optimizers.SGD(0.0, jit_compile=False), loss="mse")
    recorder = _BatchLosses()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    model.fit(dataset, epochs=1, verbose=0, callbacks=[recorder])
    return {"logged_loss": recorder.losses[0], "x": x, "y": y, "kernel": kernel, "bias": bias}
