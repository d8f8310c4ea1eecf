"""tfrnn.keras against Keras 3's own layers holding the same weights: the RNN doc's example,
outputs, gradients and `fit`, shapes, masks, stateful batches, Bidirectional, dtype policies,
weight files both ways, `.keras` and `model.export` in fresh processes, bad input."""

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
from conftest import assert_close, random_array, random_mask
from matrix import all_pairs, case_id

BATCH, TIME, FEATURES, UNITS = 3, 5, 4, 6
NAMESAKES = {
    "simple": (tfrnn.keras.SimpleRNN, keras.layers.SimpleRNN, {}),
    "lstm": (tfrnn.keras.LSTM, keras.layers.LSTM, {}),
    "gru": (tfrnn.keras.GRU, keras.layers.GRU, {}),
    "gru_reset_before": (tfrnn.keras.GRU, keras.layers.GRU, {"reset_after": False}),
}
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

# The RNN layer doc's example (shared/spec/keras-rnn-layer-doc.txt), verbatim but for its
# first line, which imported `RNN` from keras.layers.
DOC_EXAMPLE = '''
from tfrnn.keras import RNN
from keras import ops
# First, let's define a RNN Cell, as a layer subclass.
class MinimalRNNCell(keras.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units
    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units),
                                      initializer='uniform',
                                      name='kernel')
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units),
            initializer='uniform',
            name='recurrent_kernel')
    def call(self, inputs, states):
        prev_output = states[0]
        h = ops.matmul(inputs, self.kernel)
        output = h + ops.matmul(prev_output, self.recurrent_kernel)
        return output, [output]
# Let's use this cell in a RNN layer:
cell = MinimalRNNCell(32)
x = keras.Input((None, 5))
layer = RNN(cell)
y = layer(x)
# Here's how to use the cell to build a stacked RNN:
cells = [MinimalRNNCell(32), MinimalRNNCell(64)]
x = keras.Input((None, 5))
layer = RNN(cells)
y = layer(x)
'''


@pytest.fixture(scope="module")
def doc():
    namespace = {"keras": keras}
    exec(DOC_EXAMPLE, namespace)  # noqa: S102 - the doc's own code
    return namespace


def twin_models(kind, head=True, input_batch=None, **options):
    """`(ours, theirs)`: one-RNN Keras 3 models, ours with Keras' weights copied over."""

    def model(layer):
        inputs = keras.Input((None, FEATURES), batch_size=input_batch)
        outputs = layer(inputs)
        if head:
            outputs = keras.layers.Dense(2)(outputs)
        return keras.Model(inputs, outputs)

    ours_cls, theirs_cls, extra = NAMESAKES[kind]
    theirs = model(theirs_cls(UNITS, **extra, **options))
    ours = model(ours_cls(UNITS, **extra, **options))
    ours.set_weights(theirs.get_weights())
    return ours, theirs


def assert_all_close(actual, expected, atol, what=""):
    actual, expected = tf.nest.flatten(actual), tf.nest.flatten(expected)
    assert len(actual) == len(expected), f"{what}: {len(actual)} results != {len(expected)}"
    for index, (a, b) in enumerate(zip(actual, expected)):
        assert_close(np.asarray(a, np.float32), np.asarray(b, np.float32), atol, f"{what} result {index}")


def run(script, *args, block_tfrnn=False):
    """Runs `script` in a fresh Python process; returns its last line of stdout as JSON."""
    prelude = ""
    if block_tfrnn:
        prelude = textwrap.dedent(
            """
            import importlib.abc, sys
            class Block(importlib.abc.MetaPathFinder):
                def find_spec(self, name, path=None, target=None):
                    if name.split('.')[0] == 'tfrnn':
                        raise ImportError('tfrnn is blocked')
            Block.instance = Block()
            sys.meta_path.insert(0, Block.instance)
            """
        )
    process = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script), *map(str, args)],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


# -- the doc's example -----------------------------------------------------------------------


def minimal_numpy(cells, x):
    """The NumPy loop of the doc's cells: `h = x @ kernel + h @ recurrent_kernel`, stacked."""
    for cell in cells:
        kernel, recurrent = (w.numpy() for w in cell.weights)
        h = np.zeros([x.shape[0], kernel.shape[1]], np.float32)
        outputs = []
        for t in range(x.shape[1]):
            h = x[:, t] @ kernel + h @ recurrent
            outputs.append(h)
        x = np.stack(outputs, 1)
    return x[:, -1]


def test_the_doc_example_runs_verbatim_trains_and_predicts_the_numpy_loop(doc):
    assert doc["y"].shape == (None, 64)  # the stacked example's output
    data = random_array(0, 8, 6, 5) * 0.5
    for cells in ([doc["cell"]], doc["cells"]):
        inputs = keras.Input((None, 5))
        model = keras.Model(inputs, doc["RNN"](cells if len(cells) > 1 else cells[0])(inputs))
        model.compile(keras.optimizers.SGD(0.01), "mse")
        history = model.fit(data, np.zeros([8, cells[-1].units], np.float32), batch_size=3, epochs=3, verbose=0)
        losses = history.history["loss"]
        assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
        assert_close(model.predict(data, verbose=0), minimal_numpy(cells, data), 1e-5, "doc cell")
    assert [w.path.split("/")[-1] for w in doc["layer"].weights] == ["kernel", "recurrent_kernel"] * 2


# -- outputs and gradients against Keras 3's own layers ---------------------------------------

PARITY = all_pairs(
    {
        "kind": tuple(NAMESAKES),
        "return_sequences": (False, True),
        "return_state": (False, True),
        "go_backwards": (False, True),
        "mask": (False, True),
        "unroll": (False, True),
    }
)


@pytest.mark.parametrize("case", PARITY, ids=[case_id(c) for c in PARITY])
def test_outputs_and_gradients_match_keras_with_the_same_weights(case):
    case = dict(case)
    kind, masked = case.pop("kind"), case.pop("mask")
    ours, theirs = twin_models(kind, head=False, **case)
    x = tf.constant(random_array(1, BATCH, TIME, FEATURES))
    mask = tf.constant(random_mask(2, BATCH, TIME)) if masked else None

    def outputs_and_gradients(model):
        with tf.GradientTape() as tape:
            outputs = model.layers[-1](x, mask=mask)
            loss = sum(tf.reduce_sum(o * tf.range(1.0, o.shape[-1] + 1.0)) for o in tf.nest.flatten(outputs))
        return outputs, tape.gradient(loss, model.trainable_weights)

    actual, actual_grads = outputs_and_gradients(ours)
    expected, expected_grads = outputs_and_gradients(theirs)
    assert_all_close(actual, expected, 1e-5, "outputs")
    assert_all_close(actual_grads, expected_grads, 1e-4, "gradients")
    assert ours.output_shape == theirs.output_shape
    assert type(actual) is type(expected)


# Every kind under Keras' default "auto" (no XLA on a machine without GPUs), and False and True
# (what "auto" is on a GPU: Keras compiles the whole step, for tfrnn's fast-loop cells only).
def test_activations_keras_3_defines_differently_follow_keras_3():
    """`hard_sigmoid` is relu6(x + 3) / 6 in Keras 3 (tf-keras: clip(0.2 x + 0.5)); tfrnn's
    namesakes here use Keras 3's."""
    ours, theirs = twin_models("lstm", head=False, recurrent_activation="hard_sigmoid", activation="relu")
    x = tf.constant(random_array(39, BATCH, TIME, FEATURES) * 3)
    assert_close(ours(x), theirs(x), 1e-5, "hard_sigmoid")


FIT = [
    {"kind": kind, "jit_compile": jit, "return_sequences": sequences}
    for kind, jit, sequences in (
        ("simple", "auto", False), ("lstm", "auto", True), ("gru", "auto", False),
        ("gru_reset_before", "auto", True), ("lstm", False, False), ("gru", True, True),
    )
]  # fmt: skip


@pytest.mark.parametrize("case", FIT, ids=[case_id(c) for c in FIT])
def test_fit_gives_keras_losses_and_weights(case):
    """10 samples in batches of 4: the last batch is partial (traced with an unknown batch)."""
    ours, theirs = twin_models(case["kind"], return_sequences=case["return_sequences"])
    x = random_array(3, 10, TIME, FEATURES)
    y = random_array(4, *((10, TIME, 2) if case["return_sequences"] else (10, 2)))
    histories, initial = [], ours.get_weights()
    for model in (ours, theirs):
        # SGD: Adam would turn float32 rounding in near-zero gradients into whole steps.
        model.compile(keras.optimizers.SGD(0.1), "mse", jit_compile=case["jit_compile"])
        histories.append(model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-4)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(ours.get_weights(), initial)) > 1e-3
    assert ours.jit_compile == (case["jit_compile"] is True)
    if case["kind"] == "gru":  # predict and evaluate compile again: once for each mode
        assert_close(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), 1e-5, "predict")
        assert_close(ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0), 1e-5, "evaluate")


# -- symbolic use: shapes, Sequential, subclassed, initial_state, constants --------------------

SHAPES = all_pairs(
    {
        "cells": ("lstm", "stacked", "minimal"),
        "return_sequences": (False, True),
        "return_state": (False, True),
        "batch": (None, 2),
        "time": (None, TIME),
    }
)


class MinimalRNNCell(keras.Layer):
    """The RNN doc's example cell (registered, so that models with it load in a new process)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="uniform", name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units), initializer="uniform", name="recurrent_kernel")

    def call(self, inputs, states):
        output = keras.ops.matmul(inputs, self.kernel) + keras.ops.matmul(states[0], self.recurrent_kernel)
        return output, [output]


def twin_cells(cells):
    """`(ours, Keras')` cells for the generic RNN layers: Keras 3 cells or tfrnn ones."""
    if cells == "lstm":
        return tfrnn.LSTMCell(UNITS), keras.layers.LSTMCell(UNITS)
    if cells == "stacked":
        return [tfrnn.LSTMCell(UNITS), tfrnn.GRUCell(UNITS + 1)], [keras.layers.LSTMCell(UNITS), keras.layers.GRUCell(UNITS + 1)]
    return MinimalRNNCell(UNITS), MinimalRNNCell(UNITS)


@pytest.mark.parametrize("case", SHAPES, ids=[case_id(c) for c in SHAPES])
def test_symbolic_outputs_have_keras_shapes_dtypes_and_structure(case):
    ours_cell, keras_cell = twin_cells(case["cells"])
    options = {k: case[k] for k in ("return_sequences", "return_state")}
    ours, theirs = tfrnn.keras.RNN(ours_cell, **options), keras.layers.RNN(keras_cell, **options)
    x = keras.Input((case["time"], FEATURES), batch_size=case["batch"])
    actual, expected = ours(x), theirs(x)
    assert tf.nest.map_structure(lambda t: (t.shape, t.dtype), actual) == tf.nest.map_structure(lambda t: (t.shape, t.dtype), expected)
    shape = (case["batch"], case["time"], FEATURES)
    assert ours.compute_output_shape(shape) == theirs.compute_output_shape(shape)
    # Called on tensors the layer gives what its symbolic call promised.
    values = ours(random_array(5, 2, TIME, FEATURES))
    known = [[(2, TIME)[i] if d is None else d for i, d in enumerate(t.shape)] for t in tf.nest.flatten(actual)]
    assert [list(v.shape) for v in tf.nest.flatten(values)] == known


def test_keras_compiles_whole_steps_with_xla_only_for_cells_on_the_fast_loop():
    """Other loops cannot be differentiated inside an XLA step with an unknown batch (TF 2.21):
    Keras then runs the step without XLA, with a warning for an explicit jit_compile=True."""
    for make, supported in (
        (lambda: tfrnn.keras.LSTM(UNITS, dropout=0.2), True),
        (lambda: tfrnn.keras.GRU(UNITS, reset_after=False), False),
        (lambda: tfrnn.keras.LSTM(UNITS, recurrent_dropout=0.2), False),
        (lambda: tfrnn.keras.RNN(MinimalRNNCell(UNITS)), False),
        (lambda: tfrnn.keras.RNN([tfrnn.LSTMCell(UNITS), tfrnn.GRUCell(UNITS)]), False),
    ):
        inputs = keras.Input((None, FEATURES))
        model = keras.Model(inputs, make()(inputs))
        assert model.layers[-1].supports_jit is supported
        if supported:
            model.compile("sgd", "mse", jit_compile=True)
        else:
            with pytest.warns(UserWarning, match="Proceeding with `jit_compile=False`"):
                model.compile("sgd", "mse", jit_compile=True)
        assert model.jit_compile is supported


def test_sequential_with_and_without_an_input_and_a_subclassed_model_train():
    x, y = random_array(6, 6, TIME, FEATURES), random_array(7, 6, 2)

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.lower = tfrnn.keras.LSTM(UNITS, return_sequences=True, seed=1)
            self.upper = tfrnn.keras.RNN(MinimalRNNCell(UNITS))
            self.head = keras.layers.Dense(2)

        def call(self, inputs):
            return self.head(self.upper(self.lower(inputs)))

    models = [
        keras.Sequential([keras.Input((None, FEATURES)), tfrnn.keras.GRU(UNITS, seed=2), keras.layers.Dense(2)]),
        keras.Sequential([tfrnn.keras.SimpleRNN(UNITS, seed=3), keras.layers.Dense(2)]),
        Subclassed(),  # built by Keras tracing it for shapes only
    ]
    for model in models:
        model.compile(keras.optimizers.SGD(0.05), "mse")
        before = model.evaluate(x, y, verbose=0) if model.built else None
        losses = model.fit(x, y, batch_size=4, epochs=2, verbose=0).history["loss"]
        assert losses[-1] < losses[0] and (before is None or losses[-1] < before), losses
        assert len(model.trainable_weights) == {0: 5, 1: 5, 2: 7}[models.index(model)]
        assert all(np.isfinite(w).all() for w in model.get_weights())


def test_initial_state_symbolic_and_constants():
    inputs, h0, c0 = keras.Input((None, FEATURES)), keras.Input((UNITS,)), keras.Input((UNITS,))
    ours = tfrnn.keras.LSTM(UNITS, return_state=True)
    theirs = keras.layers.LSTM(UNITS, return_state=True)
    model = keras.Model([inputs, h0, c0], ours(inputs, initial_state=[h0, c0]))
    twin = keras.Model([inputs, h0, c0], theirs(inputs, initial_state=[h0, c0]))
    ours.set_weights(theirs.get_weights())
    feed = [random_array(8, BATCH, TIME, FEATURES), random_array(9, BATCH, UNITS), random_array(10, BATCH, UNITS)]
    assert_all_close(model(feed), twin(feed), 1e-5, "initial_state")

    class ConstantsCell(keras.Layer):
        """h = tanh(x @ kernel + h + c): a cell whose call takes `constants`."""

        state_size = UNITS

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], UNITS), name="kernel")

        def call(self, inputs, states, constants):
            h = keras.ops.tanh(keras.ops.matmul(inputs, self.kernel) + states[0] + constants[0])
            return h, [h]

    constant = keras.Input((UNITS,))
    layer = tfrnn.keras.RNN(ConstantsCell())
    model = keras.Model([inputs, constant], layer(inputs, constants=[constant]))
    x, c = random_array(11, BATCH, TIME, FEATURES), random_array(12, BATCH, UNITS)
    kernel, h = layer.cell.kernel.numpy(), np.zeros([BATCH, UNITS], np.float32)
    for t in range(TIME):
        h = np.tanh(x[:, t] @ kernel + h + c)
    assert_close(model([x, c]), h, 1e-5, "constants")


class ModuleCell(tf.Module):
    """A plain `tf.Module` cell whose variables exist from its `__init__`: h = tanh(x W + h U)."""

    def __init__(self, units, features):
        super().__init__()
        self.state_size = units
        self.w = tf.Variable(random_array(36, features, units) * 0.3, name="w")
        self.u = tf.Variable(random_array(37, units, units) * 0.3, name="u")

    def call(self, inputs, states):
        h = tf.tanh(inputs @ self.w + states[0] @ self.u)
        return h, [h]


def test_a_tf_module_cell_trains_saves_and_matches_its_numpy_loop(tmp_path):
    cell = ModuleCell(UNITS, FEATURES)
    inputs = keras.Input((None, FEATURES))
    layer = tfrnn.keras.RNN(cell)
    model = keras.Model(inputs, layer(inputs))
    # tf.Module lists its variables by attribute name.
    assert [w.path for w in model.weights] == [f"{layer.name}/module_cell/u", f"{layer.name}/module_cell/w"]
    x = random_array(38, BATCH, TIME, FEATURES)
    h = np.zeros([BATCH, UNITS], np.float32)
    for t in range(TIME):
        h = np.tanh(x[:, t] @ cell.w.numpy() + h @ cell.u.numpy())
    assert_close(model(x), h, 1e-5, "module cell")
    before = cell.w.numpy()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(x, np.ones([BATCH, UNITS], np.float32), epochs=1, verbose=0)
    assert float(np.max(np.abs(cell.w.numpy() - before))) > 1e-4  # Keras' optimizer trained it
    model.save_weights(tmp_path / "m.weights.h5")
    trained = [v.numpy() for v in (cell.w, cell.u)]
    cell.w.assign(before)
    model.load_weights(tmp_path / "m.weights.h5")
    assert_close(cell.w.numpy(), trained[0], 0, "loaded into the cell's own variable")


# -- masks -------------------------------------------------------------------------------------


def test_an_embedding_mask_equals_the_unpadded_sequences_one_by_one():
    lengths = [5, 3, 1]
    tokens = np.zeros([3, 5], np.int32)
    for row, length in enumerate(lengths):
        tokens[row, :length] = np.arange(1, length + 1) + row
    inputs = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(10, FEATURES, mask_zero=True)(inputs)
    # The time loop's own XLA compilation does not matter here (one compile per length).
    sequences = tfrnn.keras.GRU(UNITS, return_sequences=True, seed=1, jit_compile=False)(embedded)
    model = keras.Model(inputs, [sequences, tfrnn.keras.LSTM(UNITS, seed=2, jit_compile=False)(sequences)])
    padded_sequences, padded_last = model.predict(tokens, verbose=0)
    for row, length in enumerate(lengths):
        alone_sequences, alone_last = model.predict(tokens[row : row + 1, :length], verbose=0)
        assert_close(padded_last[row], alone_last[0], 1e-5, f"row {row}")
        assert_close(padded_sequences[row, :length], alone_sequences[0], 1e-5, f"row {row}")
    assert backend_mask(sequences) is not None  # return_sequences passes the mask on


def test_masks_propagate_as_in_keras_and_are_used_with_an_initial_state():
    """Keras 3's own RNN drops the mask when `initial_state` is passed (its `call` then gets
    two tensors and Keras does not fill in `mask`); tfrnn uses it, as the doc says."""
    x = random_array(13, BATCH, TIME, FEATURES)
    x[:, -2:] = 0.0  # masked by Masking
    inputs, h0 = keras.Input((None, FEATURES)), keras.Input((UNITS,))
    masked = keras.layers.Masking()(inputs)
    outputs = {}
    for name, cls in (("ours", tfrnn.keras.SimpleRNN), ("keras", keras.layers.SimpleRNN)):
        layer = cls(UNITS, return_sequences=True, return_state=True)
        sequences, state = layer(masked)
        assert backend_mask(sequences) is not None and backend_mask(state) is None, name
        with_state = layer(masked, initial_state=[h0])
        outputs[name] = (layer, keras.Model([inputs, h0], [sequences, state, *with_state]))
    ours, twin = outputs["ours"], outputs["keras"]
    ours[0].set_weights(twin[0].get_weights())
    h = random_array(14, BATCH, UNITS)
    actual, expected = ours[1]([x, h]), twin[1]([x, h])
    assert_all_close(actual[:2], expected[:2], 1e-5, "masked")
    # With the initial state: the final state is the one at the last unmasked step.
    plain = ours[1]([x[:, :-2], h])
    assert_close(actual[3], plain[3], 1e-5, "masked steps skipped with initial_state")
    assert float(np.max(np.abs(expected[3].numpy() - plain[3].numpy()))) > 1e-3  # Keras' differs


def backend_mask(tensor):
    return getattr(tensor, "_keras_mask", None)


# -- stateful ----------------------------------------------------------------------------------

STATEFUL_BATCH = 2


@pytest.fixture(scope="module")
def stateful():
    """A stateful GRU under a stateful LSTM in one model, and its stateless twin (same weights)."""

    def build(stateful, batch):
        inputs = keras.Input((None, FEATURES), batch_size=batch)
        hidden = tfrnn.keras.LSTM(UNITS, return_sequences=True, stateful=stateful, seed=1)(inputs)
        return keras.Model(inputs, tfrnn.keras.GRU(UNITS, return_sequences=True, stateful=stateful, seed=2)(hidden))

    model, whole = build(True, STATEFUL_BATCH), build(False, None)
    whole.set_weights(model.get_weights())
    return model, whole


def test_stateful_chunks_equal_whole_sequences_and_reset_restores(stateful):
    model, whole = stateful
    x = random_array(15, STATEFUL_BATCH, 6, FEATURES)
    expected = whole.predict(x, verbose=0)
    tfrnn.keras.reset_state(model)
    chunks = [model.predict(x[:, i : i + 2], verbose=0) for i in range(0, 6, 2)]
    assert_close(np.concatenate(chunks, 1), expected, 1e-5, "chunks")
    tfrnn.keras.reset_state(model)
    assert all(not np.any(v.numpy()) for layer in tfrnn.keras.stateful_layers(model) for v in layer.states)
    assert_close(model.predict(x[:, :2], verbose=0), expected[:, :2], 1e-5, "after reset")
    # States are not weights (as in Keras 3), but they are the model's variables.
    assert len(model.weights) == 6 and len(model.variables) == 6 + 3


def test_reset_state_with_states_and_fit_without_shuffling(stateful):
    model, whole = stateful
    lstm, gru = tfrnn.keras.stateful_layers(model)
    h, c, g = (random_array(seed, STATEFUL_BATCH, UNITS) for seed in (16, 17, 18))
    tfrnn.keras.reset_state(model, states=[[h, c], [g]])
    assert_close(lstm.states[1].numpy(), c, 0, "c")
    assert_close(gru.states[0].numpy(), g, 0, "gru state")
    x = random_array(19, STATEFUL_BATCH, 3, FEATURES)
    # The stateless twin started from the same states explicitly.
    expected = whole.layers[2](whole.layers[1](x, initial_state=[h, c]), initial_state=[g])
    assert_close(model(x), expected, 1e-5, "from the given states")
    before = [v.numpy() for v in lstm.states]
    with pytest.raises(ValueError, match=r"states must have 2 tensors \(h, c\)"):
        lstm.reset_state(states=[h])
    with pytest.raises(ValueError, match=r"states must have one entry per stateful tfrnn.keras layer .* 2 \(lstm.*, gru.*\), got 1"):
        tfrnn.keras.reset_state(model, states=[[h, c]])
    with pytest.raises(ValueError, match=r"states must have 1 tensor"):
        tfrnn.keras.reset_state(model, states=[[h, c], [g[:1]]])
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, lstm.states))  # nothing changed
    model.compile(keras.optimizers.SGD(0.01), "mse")
    chunks = random_array(20, STATEFUL_BATCH * 3, 4, FEATURES)
    losses = model.fit(chunks, np.zeros([6, 4, UNITS]), batch_size=STATEFUL_BATCH, shuffle=False, epochs=2, verbose=0)
    assert np.all(np.isfinite(losses.history["loss"]))


def test_stateful_needs_a_fixed_batch_and_keeps_states_in_the_variable_dtype():
    with pytest.raises(ValueError, match=r"stateful, so it needs a fixed batch size, got inputs of shape \(None, None, 4\) .* pass batch_size=\.\.\. to keras.Input"):
        tfrnn.keras.LSTM(UNITS, stateful=True)(keras.Input((None, FEATURES)))
    layer = tfrnn.keras.LSTM(UNITS, stateful=True, dtype="mixed_float16")
    output = layer(keras.Input((None, FEATURES), batch_size=2))
    assert output.dtype == "float16" and [v.dtype for v in layer.states] == ["float32", "float32"]
    assert layer(random_array(21, 2, 3, FEATURES)).dtype == tf.float16
    with pytest.raises(ValueError, match="holds states for batch size 2, got inputs with batch size 3"):
        layer(random_array(21, 3, 3, FEATURES))
    with pytest.raises(ValueError, match=r"reset_state\(states=\.\.\.\) is for stateful layers"):
        tfrnn.keras.LSTM(UNITS).reset_state(states=[np.zeros([2, UNITS])])
    tfrnn.keras.LSTM(UNITS).reset_state()  # nothing to reset, as in Keras 3
    # Before the layer is built, given states also fix its batch size.
    early = tfrnn.keras.GRU(UNITS, stateful=True)
    early.reset_state()  # not built: nothing to do yet
    g = random_array(34, 2, UNITS)
    early.reset_state(states=[g])
    assert_close(early.states[0].numpy(), g, 0, "states before build")
    model = keras.Model(inputs := keras.Input((None, FEATURES), batch_size=2), early(inputs))
    x = random_array(35, 2, 3, FEATURES)
    twin = tfrnn.keras.GRU(UNITS)
    twin.build((2, 3, FEATURES))
    twin.set_weights(early.get_weights())
    assert_close(model(x), twin(x, initial_state=[g]), 1e-5, "from the early states")


# -- Bidirectional -----------------------------------------------------------------------------

BIDIRECTIONAL = all_pairs(
    {
        "merge_mode": ("concat", "sum", "mul", "ave", None),
        "kind": ("lstm", "gru"),
        "return_sequences": (False, True),
        "return_state": (False, True),
    }
)


@pytest.mark.parametrize("case", BIDIRECTIONAL, ids=[case_id(c) for c in BIDIRECTIONAL])
def test_bidirectional_matches_keras_in_every_merge_mode_with_masks(case):
    ours_cls, theirs_cls, _ = NAMESAKES[case["kind"]]
    options = {k: case[k] for k in ("return_sequences", "return_state")}
    inputs = keras.Input((None, FEATURES))
    masked = keras.layers.Masking()(inputs)
    models = []
    for cls in (ours_cls, theirs_cls):
        layer = keras.layers.Bidirectional(cls(UNITS, **options), merge_mode=case["merge_mode"])
        models.append(keras.Model(inputs, layer(masked)))
    ours, theirs = models
    ours.set_weights(theirs.get_weights())
    assert ours.output_shape == theirs.output_shape
    x = random_array(22, BATCH, TIME, FEATURES)
    x[0, -2:] = 0.0  # a padded row
    assert_all_close(ours(x), theirs(x), 1e-5, "bidirectional")
    def layout(model):  # direction, cell, weight; layer names carry Keras' counters
        return [(w.path.split("/")[1].split("_")[0], *w.path.split("/")[2:]) for w in model.weights]

    assert layout(ours) == layout(theirs)


# -- dtype policies ----------------------------------------------------------------------------

# Tolerances of the compute dtypes (values of order 1): bfloat16 keeps 8 bits, float16 11.
TOLERANCE = {"mixed_bfloat16": 3e-2, "mixed_float16": 3e-3, "float64": 1e-5}


@pytest.fixture
def policy(request):
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("kind, policy", [("lstm", "mixed_bfloat16"), ("gru_reset_before", "mixed_float16"), ("gru", "mixed_float16")], indirect=["policy"])
def test_mixed_precision_matches_keras_dtypes_and_values(policy, kind):
    ours, theirs = twin_models(kind, return_sequences=True)
    x, y = random_array(23, 6, TIME, FEATURES), random_array(24, 6, TIME, 2)
    actual, expected = ours(x), theirs(x)
    assert actual.dtype == expected.dtype == keras.config.dtype_policy().compute_dtype
    assert [w.dtype for w in ours.weights] == [w.dtype for w in theirs.weights] == ["float32"] * 5
    assert_close(actual, expected, TOLERANCE[policy], policy)
    losses = []
    for model in (ours, theirs):
        model.compile(keras.optimizers.SGD(0.05), "mse")
        losses.append(model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(losses[0], losses[1], rtol=10 * TOLERANCE[policy])


def test_a_dtype_per_layer_as_keras_layers_take_it():
    x = random_array(25, BATCH, TIME, FEATURES).astype(np.float64)
    for dtype in ("float64", "mixed_bfloat16", keras.DTypePolicy("mixed_float16")):
        ours, theirs = tfrnn.keras.GRU(UNITS, dtype=dtype), keras.layers.GRU(UNITS, dtype=dtype)
        theirs.build((None, TIME, FEATURES))
        ours.build((None, TIME, FEATURES))
        ours.set_weights(theirs.get_weights())
        actual, expected = ours(x), theirs(x)
        assert actual.dtype == expected.dtype and ours.compute_dtype == theirs.compute_dtype
        assert [w.dtype for w in ours.weights] == [w.dtype for w in theirs.weights]
        name = dtype if isinstance(dtype, str) else dtype.name
        assert_close(actual, expected, TOLERANCE[name], name)


# -- weights and weight files ------------------------------------------------------------------

WEIGHT_FILES = {
    # name: (our layer, Keras' layer), each a function of nothing
    "lstm": (lambda: tfrnn.keras.LSTM(UNITS), lambda: keras.layers.LSTM(UNITS)),
    "gru_reset_before": (lambda: tfrnn.keras.GRU(UNITS, reset_after=False), lambda: keras.layers.GRU(UNITS, reset_after=False)),
    "simple": (lambda: tfrnn.keras.SimpleRNN(UNITS), lambda: keras.layers.SimpleRNN(UNITS)),
    "stacked_tfrnn_cells": (
        lambda: tfrnn.keras.RNN([tfrnn.LSTMCell(UNITS), tfrnn.GRUCell(UNITS + 1)]),
        lambda: keras.layers.RNN([keras.layers.LSTMCell(UNITS), keras.layers.GRUCell(UNITS + 1)]),
    ),
    "stacked_keras_cells": (
        lambda: tfrnn.keras.RNN([keras.layers.LSTMCell(UNITS), MinimalRNNCell(UNITS)]),
        lambda: keras.layers.RNN([keras.layers.LSTMCell(UNITS), MinimalRNNCell(UNITS)]),
    ),
    "minimal": (lambda: tfrnn.keras.RNN(MinimalRNNCell(UNITS)), lambda: keras.layers.RNN(MinimalRNNCell(UNITS))),
    "bidirectional_stateful": (
        lambda: keras.layers.Bidirectional(tfrnn.keras.GRU(UNITS, stateful=True)),
        lambda: keras.layers.Bidirectional(keras.layers.GRU(UNITS, stateful=True)),
    ),
}


def file_model(make_layer, seed):
    inputs = keras.Input((None, FEATURES), batch_size=BATCH)
    model = keras.Model(inputs, keras.layers.Dense(2)(make_layer()(inputs)))
    rng = np.random.RandomState(seed)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.3 for w in model.weights])
    return model


@pytest.mark.parametrize("name", sorted(WEIGHT_FILES))
def test_weight_files_load_both_ways_between_keras_and_tfrnn_layers(name, tmp_path):
    make_ours, make_theirs = WEIGHT_FILES[name]
    x = random_array(26, BATCH, TIME, FEATURES)
    for source, target, suffix in ((make_theirs, make_ours, "weights.h5"), (make_ours, make_theirs, "keras")):
        saved, loaded = file_model(source, 1), file_model(target, 2)
        path = str(tmp_path / f"model.{suffix}")
        saved.save_weights(path) if suffix == "weights.h5" else saved.save(path)
        loaded.load_weights(path)
        assert_close(loaded(x), saved(x), 1e-5, f"{name} {suffix}")
        assert [w.shape for w in loaded.weights] == [w.shape for w in saved.weights]


def test_a_mismatched_weight_file_raises_and_changes_nothing_of_ours(tmp_path):
    path = str(tmp_path / "gru.weights.h5")
    file_model(lambda: keras.layers.GRU(UNITS, reset_after=False), 1).save_weights(path)
    for make in (lambda: tfrnn.keras.GRU(UNITS), lambda: tfrnn.keras.LSTM(UNITS), lambda: tfrnn.keras.GRU(UNITS + 1, reset_after=False)):
        model = file_model(make, 2)
        rnn = model.layers[1]
        before = rnn.get_weights()
        with pytest.raises(ValueError, match="could not be loaded"):
            model.load_weights(path)
        assert all(np.array_equal(a, b) for a, b in zip(before, rnn.get_weights()))


def test_set_weights_copies_keras_weights_and_checks_them_all_first():
    ours, theirs = tfrnn.keras.LSTM(UNITS), keras.layers.LSTM(UNITS)
    for layer in (ours, theirs):
        layer.build((None, TIME, FEATURES))
    assert [(w.path.split("/", 1)[1], w.shape) for w in ours.weights] == [(w.path.split("/", 1)[1], w.shape) for w in theirs.weights]
    assert [(w.path, w.shape) for w in ours.cell.weights] == [(w.path, w.shape) for w in ours.weights]
    assert ours.cell.kernel is ours.weights[0] and ours.cell.units == UNITS
    before = ours.get_weights()
    bad = [w * 0 for w in theirs.get_weights()]
    bad[2] = np.zeros([3])
    with pytest.raises(ValueError, match=r"weights\[2\] of lstm.* \(bias\) must have shape \[24\], got shape \[3\]"):
        ours.set_weights(bad)
    with pytest.raises(ValueError, match=r"weights of lstm.* must be 3 arrays \(kernel \[4, 24\], recurrent_kernel \[6, 24\], bias \[24\]\), got"):
        ours.set_weights(bad[:2])
    assert all(np.array_equal(a, b) for a, b in zip(before, ours.get_weights()))
    ours.set_weights(theirs.get_weights())
    x = random_array(27, BATCH, TIME, FEATURES)
    assert_close(ours(x), theirs(x), 1e-5, "copied")


# -- saving, export and deployment in fresh processes -----------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A masked model of several tfrnn.keras layers and a stateful one, saved both ways."""
    folder = tmp_path_factory.mktemp("keras3")
    tokens = keras.Input((None,), dtype="int32")
    hidden = keras.layers.Embedding(12, FEATURES, mask_zero=True)(tokens)
    hidden = tfrnn.keras.LSTM(UNITS, return_sequences=True, seed=1)(hidden)
    hidden = keras.layers.Bidirectional(tfrnn.keras.GRU(UNITS, return_sequences=True, seed=2))(hidden)
    hidden = tfrnn.keras.RNN([tfrnn.LSTMCell(UNITS, seed=3), keras.layers.GRUCell(UNITS)], return_sequences=True)(hidden)
    masked = keras.Model(tokens, keras.layers.Dense(2)(tfrnn.keras.SimpleRNN(UNITS, seed=4)(hidden)))
    inputs = keras.Input((None, FEATURES), batch_size=2)
    stateful = keras.Model(inputs, tfrnn.keras.GRU(UNITS, stateful=True, return_sequences=True, seed=5)(inputs))
    token_values = np.array([[3, 5, 7, 0, 0], [1, 2, 3, 4, 5]], np.int32)
    x = random_array(28, 2, TIME, FEATURES)
    stateful.predict(x, verbose=0)  # the saved states are not the initial ones
    io = {"tokens": token_values, "x": x, "masked": masked.predict(token_values, verbose=0)}
    io["stateful"] = stateful.predict(x, verbose=0)  # continues from the saved states
    tfrnn.keras.reset_state(stateful)
    stateful.predict(x, verbose=0)  # again the states saved below
    masked.save(folder / "masked.keras")
    stateful.save(folder / "stateful.keras")
    masked.export(str(folder / "masked_export"), format="tf_saved_model", verbose=False)
    stateful.export(str(folder / "stateful_export"), format="tf_saved_model", verbose=False)
    np.savez(folder / "io.npz", **io)
    return folder, masked, stateful


SERVE_THEN_LOAD = """
import json, sys
import numpy as np, tensorflow as tf
folder = sys.argv[1]
io = np.load(folder + "/io.npz")
report, exports = {}, {}
# 1. model.export's SavedModels, before tfrnn can be imported.
for name, feed in (("masked", io["tokens"]), ("stateful", io["x"])):
    exports[name] = tf.saved_model.load(folder + f"/{name}_export")  # kept: it owns the variables
    report[f"export/{name}"] = float(np.max(np.abs(exports[name].serve(feed).numpy() - io[name])))
report["tfrnn imported while serving"] = any(m.split(".")[0] == "tfrnn" for m in sys.modules)
# 2. The .keras files with only import tfrnn (registered layers: no custom_objects).
sys.meta_path.remove(Block.instance)
import keras, tfrnn
for name, feed in (("masked", io["tokens"]), ("stateful", io["x"])):
    model = keras.models.load_model(folder + f"/{name}.keras")
    report[f"keras/{name}"] = float(np.max(np.abs(model.predict(feed, verbose=0) - io[name])))
    report[f"classes/{name}"] = sorted({type(l).__module__ for l in model.layers if "tfrnn" in type(l).__module__})
print(json.dumps(report))
"""


def test_model_export_serves_without_tfrnn_and_keras_files_load_with_only_import_tfrnn(saved):
    report = run(SERVE_THEN_LOAD, saved[0], block_tfrnn=True)
    errors = {k: v for k, v in report.items() if k.startswith(("export/", "keras/"))}
    assert errors == dict.fromkeys(errors, 0.0) and len(errors) == 4, report  # the states too
    assert report["tfrnn imported while serving"] is False
    assert report["classes/masked"] == ["tfrnn.keras.builtin_layers", "tfrnn.keras.layers"]


def test_tfrnn_export_and_tflite_take_keras3_models(tmp_path):
    from tfrnn import export, tflite

    inputs = keras.Input((None, FEATURES))
    model = keras.Model(inputs, keras.layers.Dense(2)(tfrnn.keras.LSTM(UNITS, return_sequences=True, seed=6)(inputs)))
    export.export_saved_model(model, str(tmp_path / "export"))
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    assert {"serving_default", "step", "initial_state"} <= set(loaded.signatures)
    x = random_array(29, 2, TIME, FEATURES)
    assert_close(loaded.signatures["serving_default"](inputs=x)["outputs"], model(x), 1e-5, "export")
    tflite.convert(str(tmp_path / "export"), str(tmp_path / "model.tflite"))
    assert tflite.op_counts((tmp_path / "model.tflite").read_bytes()).get(tflite.FUSED_LSTM_OP) == 1


# -- namesake arguments: regularizers, constraints, dropout, seed, use_cudnn ------------------


def test_regularizers_and_constraints_act_as_on_keras_layers():
    options = dict(kernel_regularizer="l2", recurrent_regularizer=keras.regularizers.L1(0.01), bias_constraint="non_neg", kernel_constraint=keras.constraints.MaxNorm(0.5))
    ours, theirs = twin_models("gru", **options)
    assert_all_close(ours.losses, theirs.losses, 1e-6, "regularization losses")
    assert len(ours.losses) == 2
    x, y = random_array(30, 8, TIME, FEATURES), random_array(31, 8, 2)
    losses = []
    for model in (ours, theirs):
        model.compile(keras.optimizers.SGD(0.5), "mse")
        losses.append(model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert np.min(ours.layers[1].cell.bias.numpy()) >= 0.0


def test_dropout_seed_and_use_cudnn():
    x = random_array(32, BATCH, TIME, FEATURES)
    layers = [tfrnn.keras.LSTM(UNITS, dropout=0.5, recurrent_dropout=0.3, seed=7, use_cudnn=False) for _ in range(2)]
    outputs = [layer(x, training=False) for layer in layers]
    assert_close(outputs[0], outputs[1], 0, "the seed fixes the initial weights")
    training = layers[0](x, training=True)
    assert float(np.max(np.abs(training.numpy() - outputs[0].numpy()))) > 1e-3
    assert layers[0].use_cudnn is False and layers[0].get_config()["seed"] == 7
    with pytest.raises(ValueError, match=r"use_cudnn must be 'auto', True or False, got 'yes'"):
        tfrnn.keras.GRU(UNITS, use_cudnn="yes")


def test_configs_round_trip_with_keras_keys():
    for kind, (ours_cls, theirs_cls, extra) in NAMESAKES.items():
        ours, theirs = ours_cls(UNITS, **extra, seed=3), theirs_cls(UNITS, **extra, seed=3)
        config = ours.get_config()
        assert set(theirs.get_config()) <= set(config), set(theirs.get_config()) - set(config)
        assert type(ours).from_config(config).get_config() == config
    layer = tfrnn.keras.RNN([tfrnn.LSTMCell(UNITS), MinimalRNNCell(UNITS)], return_state=True, jit_compile=False)
    rebuilt = tfrnn.keras.RNN.from_config(layer.get_config(), custom_objects={"MinimalRNNCell": MinimalRNNCell})
    assert rebuilt.get_config() == layer.get_config() and rebuilt.jit_compile is False


# -- bad input ---------------------------------------------------------------------------------


def test_a_tf_keras_tensor_or_cell_in_a_keras3_layer_and_the_reverse_name_the_adapter():
    with pytest.raises(TypeError, match=r"inputs is a tf-keras symbolic tensor \(tf_keras.Input\), but tfrnn.keras.LSTM is a Keras 3 layer; in a tf-keras model use tfrnn.tf_keras.LSTM"):
        tfrnn.keras.LSTM(UNITS)(tf_keras.Input((None, FEATURES)))
    with pytest.raises(TypeError, match=r"initial_state is a tf-keras symbolic tensor"):
        tfrnn.keras.GRU(UNITS)(keras.Input((None, FEATURES)), initial_state=[tf_keras.Input((UNITS,))])
    with pytest.raises(TypeError, match=r"inputs is a Keras 3 symbolic tensor \(keras.Input\), but tfrnn.tf_keras.GRU is a tf-keras layer; in a Keras 3 model use tfrnn.keras.GRU"):
        tfrnn.tf_keras.GRU(UNITS)(keras.Input((None, FEATURES)))
    with pytest.raises(TypeError, match=r"cell\[1\] is a tf-keras layer \(LSTMCell\), but tfrnn.keras.RNN is a Keras 3 layer; use a Keras 3 or tfrnn cell here, or tfrnn.tf_keras.RNN"):
        tfrnn.keras.RNN([tfrnn.GRUCell(UNITS), tf_keras.layers.LSTMCell(UNITS)])


def test_bad_shapes_masks_and_options_are_refused():
    layer = tfrnn.keras.LSTM(UNITS, return_sequences=True)
    x = random_array(33, BATCH, TIME, FEATURES)
    with pytest.raises(ValueError, match=r"mask must have shape \[batch, timesteps\] = \[3, 5\] to match inputs of shape \[3, 5, 4\], got shape \[3, 4\]"):
        layer(x, mask=np.ones([BATCH, TIME - 1], bool))
    with pytest.raises(ValueError, match=r"inputs of lstm.* must have rank >= 3, \[batch, timesteps, features...\], got shape \(3, 4\)"):
        tfrnn.keras.LSTM(UNITS)(keras.Input((FEATURES,), batch_size=3))
    with pytest.raises(ValueError, match="zero_output_for_mask of lstm.* cannot change once it is built"):
        layer.zero_output_for_mask = True
    with pytest.raises(TypeError, match="stacked cells inside stacked cells are not supported"):
        tfrnn.keras.RNN([tfrnn.LSTMCell(UNITS), [tfrnn.GRUCell(UNITS)]])
    with pytest.raises(ValueError, match=r"initial_state must have 2 tensors \(h, c\)"):
        tfrnn.keras.LSTM(UNITS)(x, initial_state=[np.zeros([BATCH, UNITS], np.float32)])


# -- tfrnn's extension: LSTM(projection_units=...) --------------------------------------------

PROJECTION = 2


@pytest.fixture(scope="module")
def projected():
    """A model of one projected tfrnn.keras.LSTM (loop not XLA-compiled) and the layer."""
    inputs = keras.Input((None, FEATURES))
    layer = tfrnn.keras.LSTM(
        UNITS, projection_units=PROJECTION, return_sequences=True, return_state=True, seed=3,
        jit_compile=False,
    )  # fmt: skip
    return keras.Model(inputs, layer(inputs)), layer


def _projected_reference(layer):
    cell = tfrnn.LSTMCell(UNITS, projection_units=PROJECTION)
    cell.build([None, FEATURES])
    cell.set_weights(layer.get_weights())
    return tfrnn.RNN(cell, return_sequences=True, return_state=True, jit_compile=False)


def test_projected_lstm_matches_the_core_cell(projected):
    model, layer = projected
    assert model.output_shape == [(None, None, PROJECTION), (None, PROJECTION), (None, UNITS)]
    shapes = [(FEATURES, 4 * UNITS), (PROJECTION, 4 * UNITS), (4 * UNITS,), (UNITS, PROJECTION)]
    assert [w.shape for w in layer.get_weights()] == shapes and layer.projection_units == PROJECTION
    assert layer.cell.projection_kernel.shape == (UNITS, PROJECTION)
    reference = _projected_reference(layer)
    x, mask = tf.constant(random_array(40, BATCH, TIME, FEATURES)), tf.constant(random_mask(41, BATCH, TIME))
    results = []
    for run, weights in ((layer, layer.trainable_weights), (reference, reference.cell.weights)):
        with tf.GradientTape() as tape:
            outputs = run(x, mask=mask)
            loss = sum(tf.reduce_sum(o * random_array(42 + i, *o.shape)) for i, o in enumerate(outputs))
        results.append((outputs, tape.gradient(loss, list(weights))))
    for name, ours, theirs in zip(("outputs", "h", "c"), results[0][0], results[1][0]):
        assert_close(ours, theirs, 1e-5, name)
    for name, ours, theirs in zip(("kernel", "recurrent", "bias", "projection"), results[0][1], results[1][1]):
        assert_close(ours, theirs, 1e-5, f"d {name}")


def test_projected_lstm_config_and_keras_file_round_trip(projected, tmp_path):
    model, layer = projected
    config = layer.get_config()
    assert config["projection_units"] == PROJECTION
    assert tfrnn.keras.LSTM.from_config(config).get_config() == config
    assert tfrnn.keras.LSTM(UNITS).get_config()["projection_units"] is None
    model.save(tmp_path / "projected.keras")
    loaded = keras.models.load_model(tmp_path / "projected.keras")
    x = random_array(43, BATCH, TIME, FEATURES)
    for ours, theirs in zip(loaded(x), model(x)):
        assert_close(ours, theirs, 1e-6, "loaded")


def test_projected_lstm_exports(tmp_path):
    from tfrnn import export

    inputs = keras.Input((None, FEATURES))
    model = keras.Model(inputs, tfrnn.keras.LSTM(UNITS, projection_units=PROJECTION, seed=4)(inputs))
    result = export.export_saved_model(model, str(tmp_path / "projected"))
    assert max(result.max_abs_error.values()) <= 1e-5
    loaded = tf.saved_model.load(result.path)
    x = random_array(44, 2, TIME, FEATURES)
    assert_close(loaded.signatures["serving_default"](inputs=x)["outputs"], model(x), 1e-5, "export")


@pytest.mark.parametrize("value", [0, -1, 2.5])
def test_projection_units_must_be_positive(value):
    with pytest.raises(ValueError, match=f"projection_units must be a positive int or None, got {value!r}"):
        tfrnn.keras.LSTM(UNITS, projection_units=value)


def test_projected_lstm_initial_state_of_the_wrong_shape(projected):
    _, layer = projected
    wrong = [tf.zeros([BATCH, UNITS]), tf.zeros([BATCH, UNITS])]
    message = rf"initial_state must have 2 tensors \(h, c\) of shape \[{BATCH}, {PROJECTION}\], \[{BATCH}, {UNITS}\], got 2 tensors of shape \[{BATCH}, {UNITS}\], \[{BATCH}, {UNITS}\]"
    with pytest.raises(ValueError, match=message):
        layer(tf.zeros([BATCH, TIME, FEATURES]), initial_state=wrong)
