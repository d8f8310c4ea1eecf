"""tfrnn.tf_keras against tf-keras twins holding the same weights: outputs, shapes, masks,
training, stateful batches, weights, serialization (also in a fresh process), bad input."""

import copy
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfrnn
from conftest import assert_close, random_array, random_mask
from keras_twins import MinimalRNNCell
from matrix import all_pairs, case_id

BATCH, TIME, FEATURES, UNITS = 3, 5, 4, 6
NAMESAKES = {
    "simple": (tfrnn.tf_keras.SimpleRNN, tf_keras.layers.SimpleRNN, {}),
    "lstm": (tfrnn.tf_keras.LSTM, tf_keras.layers.LSTM, {}),
    "gru": (tfrnn.tf_keras.GRU, tf_keras.layers.GRU, {}),
    "gru_reset_before": (tfrnn.tf_keras.GRU, tf_keras.layers.GRU, {"reset_after": False}),
}
KINDS = tuple(NAMESAKES) + ("stacked", "minimal")


def twin_layers(kind, **options):
    """`(tfrnn.tf_keras layer, tf-keras layer)` of `kind` with the same options (unbuilt).

    `stacked` is an LSTM cell under a GRU cell in the generic `RNN`; `minimal` is the Keras
    docs' `MinimalRNNCell` in the generic `RNN`.
    """
    if kind in NAMESAKES:
        ours, theirs, extra = NAMESAKES[kind]
        return ours(UNITS, **extra, **options), theirs(UNITS, **extra, **options)
    if kind == "stacked":
        return (
            tfrnn.tf_keras.RNN([tfrnn.LSTMCell(UNITS), tfrnn.GRUCell(UNITS + 1)], **options),
            tf_keras.layers.RNN(
                [tf_keras.layers.LSTMCell(UNITS), tf_keras.layers.GRUCell(UNITS + 1)], **options
            ),
        )
    return tfrnn.tf_keras.RNN(MinimalRNNCell(UNITS), **options), tf_keras.layers.RNN(
        MinimalRNNCell(UNITS), **options
    )


def copy_weights(ours, theirs, input_shape):
    """Builds both layers and loads tf-keras' weights into ours (tf-keras' order)."""
    theirs.build(input_shape)
    ours.build(input_shape)
    ours.set_weights(theirs.get_weights())


def state_sizes(kind):
    return {"lstm": [UNITS, UNITS], "stacked": [UNITS, UNITS, UNITS + 1]}.get(kind, [UNITS])


def nested_states(kind, flat):
    """Initial states as tf-keras takes them: one entry per cell for stacked cells."""
    return [flat[:2], flat[2]] if kind == "stacked" else flat


def assert_all_close(actual, expected, atol, what=""):
    actual, expected = tf.nest.flatten(actual), tf.nest.flatten(expected)
    assert len(actual) == len(expected), f"{what}: {len(actual)} results != {len(expected)}"
    for index, (a, b) in enumerate(zip(actual, expected)):
        assert_close(a, b, atol, f"{what} result {index}")


# -- outputs and static shapes against tf-keras ---------------------------------------------

PARITY_MATRIX = all_pairs(
    {
        "kind": KINDS,
        "return_sequences": (False, True),
        "return_state": (False, True),
        "go_backwards": (False, True),
        "time_major": (False, True),
        "unroll": (False, True),
        "zero_output_for_mask": (False, True),
        "mask": (False, True),
        "initial_state": (False, True),
    },
    # tf-keras also zeroes the last output with return_sequences=False (keras#17596, see
    # README); the documented behaviour is compared where both agree on it.
    allowed=lambda c: c["return_sequences"] or not c["zero_output_for_mask"],
)


@pytest.mark.parametrize("case", PARITY_MATRIX, ids=case_id)
def test_layer_matches_tf_keras(case):
    options = {k: case[k] for k in ("return_sequences", "return_state", "go_backwards",
                                    "time_major", "unroll", "zero_output_for_mask")}
    ours, _ = twin_layers(case["kind"], **options)
    # The reference is tf-keras' while loop: its unrolled path zeroes a go_backwards sequence
    # with the unreversed mask (tfrnn's unroll is checked against the while loop in test_rnn).
    _, theirs = twin_layers(case["kind"], **{**options, "unroll": False})
    inputs = random_array(1, BATCH, TIME, FEATURES)
    mask = random_mask(2, BATCH, TIME) if case["mask"] else None
    if case["time_major"]:
        inputs = np.swapaxes(inputs, 0, 1)
        mask = None if mask is None else mask.T
    copy_weights(ours, theirs, inputs.shape)
    kwargs = {"mask": mask}
    if case["initial_state"]:
        flat = [tf.constant(random_array(10 + i, BATCH, n)) for i, n in enumerate(state_sizes(case["kind"]))]
        kwargs["initial_state"] = nested_states(case["kind"], flat)
    expected = theirs(inputs, **kwargs)
    results = ours(inputs, **kwargs)
    assert_all_close(results, expected, 1e-5)
    shapes = ours.compute_output_shape(inputs.shape)
    assert [s.as_list() for s in tf.nest.flatten(shapes)] == [
        list(r.shape) for r in tf.nest.flatten(results)
    ]


def test_symbolic_output_shapes_and_masks_match_tf_keras():
    """Every return_sequences/return_state combination, single and stacked cells, on
    `tf_keras.Input((None, F))` with a propagated mask (time-major shapes: the matrix above)."""
    for kind in ("lstm", "stacked"):
        for return_sequences in (False, True):
            for return_state in (False, True):
                options = dict(return_sequences=return_sequences, return_state=return_state)
                ours, theirs = twin_layers(kind, **options)
                shape = (None, None, FEATURES)
                x = tf_keras.Input(batch_shape=shape)
                masked = tf_keras.layers.Masking()(x)
                ours_out, theirs_out = ours(masked), theirs(masked)
                what = f"{kind} {options}"
                ours_shapes = [t.shape.as_list() for t in tf.nest.flatten(ours_out)]
                assert ours_shapes == [t.shape.as_list() for t in tf.nest.flatten(theirs_out)], what
                computed = tf.nest.flatten(ours.compute_output_shape(shape))
                assert [s.as_list() for s in computed] == ours_shapes, what
                expected = tf.nest.flatten(theirs.compute_output_shape(shape))
                assert [tf.TensorShape(s).as_list() for s in expected] == ours_shapes, what
                ours_masks = [getattr(t, "_keras_mask", None) is not None for t in tf.nest.flatten(ours_out)]
                theirs_masks = [getattr(t, "_keras_mask", None) is not None for t in tf.nest.flatten(theirs_out)]
                assert ours_masks == theirs_masks == [return_sequences] + [False] * (len(ours_masks) - 1), what


@pytest.mark.parametrize("stacked", [False, True], ids=["single", "stacked"])
def test_keras_docs_example_builds_and_trains(stacked):
    """The Keras docs' MinimalRNNCell on `Input((None, 5))`; fit() against tf-keras' twin."""
    def model(rnn_class):
        cells = [MinimalRNNCell(32), MinimalRNNCell(64)] if stacked else MinimalRNNCell(32)
        x = tf_keras.Input((None, 5))
        y = rnn_class(cells)(x)
        return tf_keras.Model(x, tf_keras.layers.Dense(1)(y))

    ours, theirs = model(tfrnn.tf_keras.RNN), model(tf_keras.layers.RNN)
    assert ours.output_shape == (None, 1)
    assert ours.count_params() == theirs.count_params()
    assert ours.layers[1].output_shape == (None, 64 if stacked else 32)
    ours.set_weights(theirs.get_weights())
    # 5 samples in batches of 2: the last batch is partial, so the batch size is unknown
    # when fit() traces its step (what XLA cannot compile the gradient of; see _core_for).
    inputs, targets = random_array(3, 5, 3, 5) * 0.3, random_array(4, 5, 1)
    histories = []
    for model_ in (ours, theirs):
        model_.compile(tf_keras.optimizers.SGD(0.05), "mse")
        histories.append(model_.fit(inputs, targets, batch_size=2, epochs=2, shuffle=False, verbose=0))
    np.testing.assert_allclose(histories[0].history["loss"], histories[1].history["loss"], rtol=1e-4)
    assert histories[0].history["loss"][-1] < histories[0].history["loss"][0]
    assert_all_close(ours.get_weights(), theirs.get_weights(), 1e-5, "trained weights")


# -- training: fit() with masks, regularizers and constraints, plain and XLA-compiled --------


def _masked_model(module):
    """Embedding(mask_zero) -> LSTM -> GRU -> SimpleRNN -> Dense, with regularizers and a
    constraint (non_neg: active from the first step), from `module` (tf-keras or tfrnn.tf_keras)."""
    x = tf_keras.Input((None,), dtype="int32")
    h = tf_keras.layers.Embedding(10, 4, mask_zero=True)(x)
    h = module.LSTM(5, return_sequences=True, kernel_regularizer="l2", recurrent_constraint="non_neg")(h)
    h = module.GRU(4, return_sequences=True, bias_regularizer=tf_keras.regularizers.L1(0.1))(h)
    h = module.SimpleRNN(3, recurrent_regularizer="l2")(h)
    return tf_keras.Model(x, tf_keras.layers.Dense(1)(h))


def _padded_ids(seed, batch, timesteps):
    ids = np.random.RandomState(seed).randint(1, 10, (batch, timesteps))
    lengths = np.random.RandomState(seed + 1).randint(1, timesteps + 1, batch)
    ids[np.arange(timesteps)[None, :] >= lengths[:, None]] = 0
    return ids, lengths


@pytest.fixture(scope="module")
def trained_tf_keras_reference():
    """A tf-keras model, its initial weights, data, and its losses/weights after fit()."""
    model = _masked_model(tf_keras.layers)
    initial = model.get_weights()
    ids, _ = _padded_ids(5, 8, TIME)
    targets = random_array(6, 8, 1)
    outputs = model.predict_on_batch(ids)
    regularization = float(tf.add_n(model.losses))
    model.compile(tf_keras.optimizers.SGD(0.1), "mse")
    history = model.fit(ids, targets, batch_size=4, epochs=3, shuffle=False, verbose=0)
    return dict(initial=initial, ids=ids, targets=targets, outputs=outputs,
                regularization=regularization, losses=history.history["loss"],
                weights=model.get_weights())


def test_fit_matches_tf_keras(trained_tf_keras_reference):
    """Same initial weights, data and order: same outputs, regularization losses, per-epoch
    losses (1e-4 relative) and trained weights (compile(jit_compile=True): the stateful fit)."""
    ref = trained_tf_keras_reference
    model = _masked_model(tfrnn.tf_keras)
    model.set_weights(ref["initial"])
    assert_close(model.predict_on_batch(ref["ids"]), ref["outputs"], 1e-5, "outputs")
    assert len(model.losses) == 3
    assert abs(float(tf.add_n(model.losses)) - ref["regularization"]) <= 1e-5
    model.compile(tf_keras.optimizers.SGD(0.1), "mse")
    history = model.fit(ref["ids"], ref["targets"], batch_size=4, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], ref["losses"], rtol=1e-4)
    assert_all_close(model.get_weights(), ref["weights"], 1e-5, "trained weights")


def test_padded_batch_equals_unpadded_sequences_one_by_one(trained_tf_keras_reference):
    """Embedding(mask_zero=True): the mask reaches the first RNN and, propagated by it, the
    next ones; a right-padded batch gives what each unpadded sequence gives alone."""
    model = _masked_model(tfrnn.tf_keras)
    model.set_weights(trained_tf_keras_reference["initial"])
    ids, lengths = _padded_ids(7, 4, TIME)
    batch = model(ids).numpy()
    for row, length in enumerate(lengths):
        alone = model(ids[row : row + 1, :length]).numpy()
        assert_close(batch[row : row + 1], alone, 1e-5, f"row {row} (length {length})")


def test_dropout_applies_in_training_only():
    ours, theirs = twin_layers("lstm", dropout=0.5, recurrent_dropout=0.3, return_sequences=True)
    inputs = random_array(8, BATCH, TIME, FEATURES)
    copy_weights(ours, theirs, inputs.shape)
    inference = ours(inputs, training=False)
    assert_close(inference, theirs(inputs, training=False), 1e-5, "inference")
    first, second = ours(inputs, training=True), ours(inputs, training=True)
    assert np.abs(first.numpy() - inference.numpy()).max() > 1e-2
    assert np.abs(first.numpy() - second.numpy()).max() > 1e-2  # new masks per call


# -- stateful layers ------------------------------------------------------------------------

STATEFUL_BATCH = 2
CHUNKS = [(0, 2), (2, 5), (5, 6)]


def _stateful_model(module, stateful, batch_size=None):
    x = tf_keras.Input((None, FEATURES), batch_size=batch_size)
    h = module.LSTM(UNITS, return_sequences=True, stateful=stateful)(x)
    return tf_keras.Model(x, tf_keras.layers.Dense(2)(h))


def test_stateful_predictions_on_chunks_equal_the_whole_sequence():
    stateful = _stateful_model(tfrnn.tf_keras, True, STATEFUL_BATCH)
    layer = stateful.layers[1]
    stateless = _stateful_model(tf_keras.layers, False)
    stateless.set_weights(stateful.get_weights())
    sequence = random_array(9, STATEFUL_BATCH, 6, FEATURES)
    whole = stateless.predict_on_batch(sequence)
    pieces = [stateful.predict_on_batch(sequence[:, a:b]) for a, b in CHUNKS]
    assert_close(np.concatenate(pieces, 1), whole, 1e-5, "chunks")
    keras_lstm = tf_keras.layers.LSTM(UNITS, return_state=True)
    keras_lstm.build(sequence.shape)
    keras_lstm.set_weights(layer.get_weights())
    assert_all_close(layer.states, keras_lstm(sequence)[1:], 1e-5, "final states")

    stateful.reset_states()
    assert all(np.all(v.numpy() == 0) for v in layer.states)
    assert_close(stateful.predict_on_batch(sequence[:, :2]), pieces[0], 1e-6, "after reset")

    given = [random_array(11, STATEFUL_BATCH, UNITS), random_array(12, STATEFUL_BATCH, UNITS)]
    layer.reset_states(states=given)
    assert_all_close(layer.states, given, 0.0, "reset to values")
    expected = keras_lstm.__class__(UNITS, return_sequences=True)
    expected.build(sequence.shape)
    expected.set_weights(layer.get_weights())
    hidden = expected(sequence[:, :3], initial_state=[tf.constant(g) for g in given])
    dense = stateful.layers[2]
    assert_close(stateful.predict_on_batch(sequence[:, :3]), dense(hidden), 1e-5, "from values")


def test_stateful_fit_on_consecutive_chunks_matches_tf_keras():
    """fit(shuffle=False) over consecutive chunks of B streams, against tf-keras' stateful
    twin; then the trained stateful model predicts the whole streams chunk by chunk."""
    ours = _stateful_model(tfrnn.tf_keras, True, STATEFUL_BATCH)
    theirs = _stateful_model(tf_keras.layers, True, STATEFUL_BATCH)
    ours.set_weights(theirs.get_weights())
    streams = random_array(13, STATEFUL_BATCH, 6, FEATURES)
    targets = random_array(14, STATEFUL_BATCH, 6, 2)
    # Batch k holds chunk k of every stream, so each batch continues the previous one.
    chunks = np.concatenate([streams[:, 2 * k : 2 * k + 2] for k in range(3)])
    chunk_targets = np.concatenate([targets[:, 2 * k : 2 * k + 2] for k in range(3)])
    losses = []
    for model in (ours, theirs):
        # The whole train step compiled with XLA (plain compile(): the other fit tests).
        model.compile(tf_keras.optimizers.SGD(0.1), "mse", jit_compile=model is ours)
        history = model.fit(chunks, chunk_targets, batch_size=STATEFUL_BATCH, epochs=2,
                            shuffle=False, verbose=0)
        losses.append(history.history["loss"])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
    assert_all_close(ours.get_weights(), theirs.get_weights(), 1e-5, "trained weights")
    assert_all_close(ours.layers[1].states, theirs.layers[1].states, 1e-5, "states after fit")

    ours.reset_states()
    stateless = _stateful_model(tf_keras.layers, False)
    stateless.set_weights(ours.get_weights())
    pieces = [ours.predict_on_batch(streams[:, a:b]) for a, b in CHUNKS]
    assert_close(np.concatenate(pieces, 1), stateless.predict_on_batch(streams), 1e-5)


def test_states_are_non_trainable_variables_outside_the_weight_list():
    model = _stateful_model(tfrnn.tf_keras, True, STATEFUL_BATCH)
    layer = model.layers[1]
    assert [v.shape.as_list() for v in layer.states] == [[STATEFUL_BATCH, UNITS]] * 2
    assert all(not v.trainable for v in layer.states)
    state_ids = {id(v) for v in layer.states}
    assert not state_ids & {id(v) for v in model.trainable_weights}
    # As in tf-keras, weight lists hold the weights only, so they copy between the two.
    keras_model = _stateful_model(tf_keras.layers, True, STATEFUL_BATCH)
    assert [w.shape for w in model.get_weights()] == [w.shape for w in keras_model.get_weights()]
    layer.trainable = False
    assert model.trainable_weights == model.layers[2].trainable_weights
    assert [v.name for v in layer.non_trainable_weights] == [v.name for v in layer.cell.weights]


# -- weights --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_weights_have_tf_keras_order_and_shapes(kind):
    ours, theirs = twin_layers(kind)
    theirs.build((None, None, FEATURES))
    ours.build((None, None, FEATURES))
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
    names = [v.name.split("/")[-1] for v in ours.weights]
    assert names == [v.name.split("/")[-1] for v in theirs.weights]
    assert len(ours.trainable_weights) == len(ours.weights) and not ours.non_trainable_weights


def test_keras3_cells_train_inside_a_tf_keras_model():
    import keras

    class Keras3Cell(keras.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = units

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")

        def call(self, inputs, states):
            output = keras.ops.tanh(keras.ops.matmul(inputs, self.kernel) + states[0])
            return output, [output]

    cells = [Keras3Cell(4), Keras3Cell(3)]
    x = tf_keras.Input((None, FEATURES))
    model = tf_keras.Model(x, tfrnn.tf_keras.RNN(cells, return_sequences=True)(x))
    inputs = random_array(15, BATCH, TIME, FEATURES)
    expected = keras.layers.RNN(cells, return_sequences=True)(inputs)  # same cell objects
    assert_close(model(inputs), np.asarray(expected), 1e-5, "outputs")
    assert len(model.trainable_weights) == 2
    before = [w.numpy() for w in model.trainable_weights]
    model.compile(tf_keras.optimizers.SGD(0.1), "mse")
    model.fit(inputs, random_array(16, BATCH, TIME, 3), epochs=1, verbose=0)
    assert all(np.abs(b - w.numpy()).max() > 0 for b, w in zip(before, model.trainable_weights))


# -- Bidirectional, symbolic initial states and constants -----------------------------------

BIDIRECTIONAL_MATRIX = all_pairs(
    {
        "merge_mode": ("concat", "sum", "mul", "ave", None),
        "return_state": (False, True),
        "mask": (False, True),
        "initial_state": (False, True),
        "jit_compile": (False, True),
    }
)


@pytest.mark.parametrize("case", BIDIRECTIONAL_MATRIX, ids=case_id)
def test_bidirectional_matches_tf_keras(case):
    """Bidirectional around tfrnn.tf_keras.LSTM in a functional model with symbolic initial
    states, against the same model around tf_keras.layers.LSTM."""

    def model(lstm_class, **options):
        x = tf_keras.Input((None, FEATURES))
        inputs, kwargs, masked = [x], {}, x
        if case["mask"]:
            masked = tf_keras.layers.Masking()(x)
        if case["initial_state"]:
            states = [tf_keras.Input((UNITS,)) for _ in range(4)]
            inputs += states
            kwargs["initial_state"] = states
        layer = lstm_class(UNITS, return_sequences=True, return_state=case["return_state"], **options)
        y = tf_keras.layers.Bidirectional(layer, merge_mode=case["merge_mode"])(masked, **kwargs)
        return tf_keras.Model(inputs, y)

    ours = model(tfrnn.tf_keras.LSTM, jit_compile=case["jit_compile"])
    theirs = model(tf_keras.layers.LSTM)
    ours.set_weights(theirs.get_weights())
    sequence = random_array(17, BATCH, TIME, FEATURES)
    sequence[0, 3:] = 0.0  # padding, masked when the model has Masking
    data = [sequence] + [random_array(18 + i, BATCH, UNITS) for i in range(4 if case["initial_state"] else 0)]
    assert_all_close(ours(data), theirs(data), 1e-5)
    assert ours.output_shape == theirs.output_shape


def test_symbolic_initial_state_and_constants_reach_a_keras_cell():
    class ConstantCell(tf_keras.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = units

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")

        def call(self, inputs, states, constants):
            h = tf.tanh(tf.matmul(inputs, self.kernel) + states[0] * constants[0])
            return h, [h]

    cell = ConstantCell(UNITS)  # one cell (one set of weights) in both models
    x, h, scale = (tf_keras.Input(shape) for shape in ((None, FEATURES), (UNITS,), (UNITS,)))
    ours = tf_keras.Model([x, h, scale], tfrnn.tf_keras.RNN(cell)(x, initial_state=h, constants=scale))
    theirs = tf_keras.Model([x, h, scale], tf_keras.layers.RNN(cell)(x, initial_state=h, constants=scale))
    data = [random_array(19, BATCH, TIME, FEATURES), random_array(20, BATCH, UNITS),
            random_array(21, BATCH, UNITS)]
    assert_close(ours(data), theirs(data), 1e-5)
    rebuilt = tf_keras.Model.from_config(ours.get_config(), custom_objects={"ConstantCell": ConstantCell})
    rebuilt.set_weights(ours.get_weights())
    assert_close(rebuilt(data), theirs(data), 1e-5, "rebuilt from the model config")


# -- serialization --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_config_round_trip(kind):
    options = dict(return_sequences=True, go_backwards=True, kernel_regularizer="l2") if kind in NAMESAKES else {}
    ours, theirs = twin_layers(kind, **options)
    custom = {"MinimalRNNCell": MinimalRNNCell}
    restored = type(ours).from_config(ours.get_config(), custom_objects=custom) if kind == "minimal" \
        else type(ours).from_config(ours.get_config())
    assert restored.get_config() == ours.get_config()
    assert json.loads(json.dumps(ours.get_config())) == ours.get_config()
    inputs = random_array(21, BATCH, TIME, FEATURES)
    copy_weights(restored, theirs, inputs.shape)
    assert_all_close(restored(inputs), theirs(inputs), 1e-5)
    if kind in NAMESAKES:
        # A tf-keras layer's own config builds the tfrnn namesake.
        from_keras = type(ours).from_config(theirs.get_config())
        copy_weights(from_keras, theirs, inputs.shape)
        assert_all_close(from_keras(inputs), theirs(inputs), 1e-5)


LOAD_IN_FRESH_PROCESS = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np
    import tf_keras
    import tfrnn  # registers the layers: no custom_objects below
    directory = sys.argv[1]
    data = np.load(os.path.join(directory, "data.npz"))
    report = {}
    for name in ("model.keras", "savedmodel"):
        model = tf_keras.models.load_model(os.path.join(directory, name))
        output = model.predict_on_batch(data["next_chunk"])
        report[name] = {
            "error": float(np.abs(output - data["expected"]).max()),
            "classes": sorted({type(l).__module__ + "." + type(l).__name__ for l in model.layers}),
        }
    print(json.dumps(report))
    """
)


def test_save_and_load_in_a_fresh_process(tmp_path):
    """`.keras` and SavedModel round trips of a model with masks, Bidirectional, a stacked
    generic RNN and a stateful GRU (whose states are saved too) reproduce outputs exactly."""
    x = tf_keras.Input((None,), dtype="int32", batch_size=2)
    h = tf_keras.layers.Embedding(10, 4, mask_zero=True)(x)
    h = tf_keras.layers.Bidirectional(tfrnn.tf_keras.LSTM(3, return_sequences=True, kernel_regularizer="l2"))(h)
    h = tfrnn.tf_keras.RNN([tfrnn.SimpleRNNCell(4), tfrnn.GRUCell(3)], return_sequences=True)(h)
    h = tfrnn.tf_keras.GRU(5, stateful=True, reset_after=False)(h)
    model = tf_keras.Model(x, tf_keras.layers.Dense(2)(h))
    first, _ = _padded_ids(22, 2, TIME)
    next_chunk, _ = _padded_ids(24, 2, TIME)
    model.predict_on_batch(first)  # the stored states are now non-zero
    # HDF5 weight files need distinct variable names inside a layer (Bidirectional).
    weights = model.get_weights()
    model.save_weights(tmp_path / "weights.h5")
    model.set_weights([np.zeros_like(w) for w in weights])
    model.load_weights(tmp_path / "weights.h5")
    assert_all_close(model.get_weights(), weights, 0.0, "HDF5 weights")
    model.save(tmp_path / "model.keras")
    model.save(tmp_path / "savedmodel", save_format="tf")
    expected = model.predict_on_batch(next_chunk)
    np.savez(tmp_path / "data.npz", next_chunk=next_chunk, expected=expected)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", LOAD_IN_FRESH_PROCESS, str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for name, entry in report.items():
        assert entry["error"] == 0.0, name
        assert {"tfrnn.tf_keras.layers.RNN", "tfrnn.tf_keras.layers.GRU"} <= set(entry["classes"]), name


# -- drop-in for tf-keras users (issue 12): each case against tf-keras' own result --------------


def test_deepcopy_of_a_called_layer_matches_tf_keras():
    """A copy of a called layer computes the same, with its own variables (states too); a
    copy of an unbuilt layer builds its own weights, as in tf-keras."""
    inputs = random_array(30, BATCH, TIME, FEATURES)
    for layers in (tf_keras.layers, tfrnn.tf_keras):
        original = layers.GRU(UNITS, stateful=True, return_sequences=True)
        expected = original(inputs).numpy()
        copied = copy.deepcopy(original)
        assert not {id(v) for v in copied.weights + list(copied.states)} & {
            id(v) for v in original.weights + list(original.states)}, layers.__name__
        assert_close(copied.states[0], original.states[0], 0.0, layers.__name__)
        original.reset_states()
        copied.reset_states()
        assert_close(copied(inputs), expected, 0.0, f"{layers.__name__} copy")
        assert np.abs(original.states[0].numpy()).max() == 0.0  # the copy's call left it alone
        unbuilt = copy.deepcopy(layers.LSTM(UNITS))
        assert unbuilt(inputs).shape == (BATCH, UNITS) and len(unbuilt.weights) == 3


def _ragged_sequences():
    rows = [random_array(31, 2, FEATURES), random_array(32, 5, FEATURES), random_array(33, 3, FEATURES)]
    return tf.RaggedTensor.from_row_lengths(np.concatenate(rows), [2, 5, 3])


@pytest.mark.parametrize("return_sequences, go_backwards", [(False, False), (True, False), (False, True), (True, True)])
def test_ragged_inputs_in_a_functional_model_match_tf_keras(return_sequences, go_backwards):
    """tf_keras.Input(ragged=True): a ragged sequence back (its row lengths), or the last
    output; unroll and a mask refused, as tf-keras refuses them."""
    ours, theirs = twin_layers("gru", return_sequences=return_sequences, go_backwards=go_backwards)
    copy_weights(ours, theirs, (None, None, FEATURES))
    results = []
    for layer in (ours, theirs):
        x = tf_keras.Input((None, FEATURES), ragged=True)
        results.append(tf_keras.Model(x, layer(x)).predict_on_batch(_ragged_sequences()))
    if return_sequences:
        assert [type(r).__name__ for r in results] == ["RaggedTensor"] * 2
        np.testing.assert_array_equal(results[0].row_lengths(), results[1].row_lengths())
        results = [r.flat_values for r in results]
    assert_close(results[0], results[1], 1e-5)
    for layers in (tfrnn.tf_keras, tf_keras.layers):
        with pytest.raises(ValueError):
            layers.GRU(UNITS, unroll=True)(_ragged_sequences())
        with pytest.raises(ValueError):
            layers.GRU(UNITS)(_ragged_sequences(), mask=tf.ones([3, 5], tf.bool))


def test_a_float_mask_matches_tf_keras():
    ours, theirs = twin_layers("lstm", return_sequences=True)
    inputs = random_array(34, BATCH, TIME, FEATURES)
    copy_weights(ours, theirs, inputs.shape)
    mask = random_mask(35, BATCH, TIME).astype(np.float32)
    assert_close(ours(inputs, mask=mask), theirs(inputs, mask=mask), 1e-5)


def test_constants_are_counted_configured_and_found_in_a_flat_call_as_in_tf_keras():
    """`constants=` records num_constants (in the config), so the flat `[x, c]` call of a
    rebuilt layer finds them; a stack passes them only to the cells that take them."""
    from keras_twins import CellWithConstants

    data = [random_array(36, BATCH, TIME, FEATURES), random_array(37, BATCH, 2)]
    outputs = []
    for layers in (tfrnn.tf_keras, tf_keras.layers):
        x, c = tf_keras.Input((None, FEATURES)), tf_keras.Input((2,))
        layer = layers.RNN(CellWithConstants(UNITS, 2))
        model = tf_keras.Model([x, c], layer(x, constants=c))
        if outputs:
            model.set_weights(outputs[0][1])
        config = layer.get_config()
        assert config["num_constants"] == 1
        with tf_keras.utils.CustomObjectScope({"CellWithConstants": CellWithConstants}):
            flat = type(layer).from_config(config)
        flat_model = tf_keras.Model([x, c], flat([x, c]))
        flat_model.set_weights(model.get_weights())
        assert_close(flat_model(data), model(data), 0.0, f"{layers.__name__} flat call")
        outputs.append((model(data).numpy(), model.get_weights()))
    assert_close(outputs[0][0], outputs[1][0], 1e-5, "against tf-keras")
    ours, theirs = twin_layers("stacked")
    copy_weights(ours, theirs, data[0].shape)
    constants = tf.constant(data[1])
    assert_close(ours(data[0], constants=constants), theirs(data[0], constants=constants), 1e-5, "stack")


def test_stacked_states_are_nested_per_cell_as_in_tf_keras():
    """return_state gives `[output, [h1, c1], h2]`, eagerly and symbolically; `states` and
    initial states take the same nesting."""
    ours, theirs = twin_layers("stacked", return_state=True)
    inputs = random_array(38, BATCH, TIME, FEATURES)
    copy_weights(ours, theirs, inputs.shape)
    expected, results = theirs(inputs), ours(inputs)
    tf.nest.assert_same_structure(results, expected)
    assert_all_close(results, expected, 1e-5)
    assert_all_close(ours(inputs, initial_state=expected[1:]), theirs(inputs, initial_state=expected[1:]), 1e-5)
    x = tf_keras.Input((None, FEATURES))
    symbolic = [ours(x), theirs(x)]
    tf.nest.assert_same_structure(symbolic[0], symbolic[1])
    assert [t.shape.as_list() for t in tf.nest.flatten(symbolic[0])] == [
        t.shape.as_list() for t in tf.nest.flatten(symbolic[1])]
    assert ours.states == theirs.states == ([None, None], None)


def test_states_of_layers_that_are_not_stateful_are_nones_as_in_tf_keras():
    for kind in ("simple", "lstm", "stacked"):
        ours, theirs = twin_layers(kind)
        assert ours.states == theirs.states, kind
        ours.states = theirs.states = [tf.ones([1, UNITS])]
        assert ours.states is not None and len(ours.states) == len(theirs.states) == 1
    # Bidirectional reads the wrapped layer's `states` for its state masks.
    x = tf_keras.Input((None, FEATURES))
    outputs = tf_keras.layers.Bidirectional(tfrnn.tf_keras.LSTM(UNITS, return_state=True))(x)
    assert len(outputs) == 5


def test_stateful_states_come_from_a_keras_cells_get_initial_state_as_in_tf_keras():
    """tf-keras asks the cell with the dtype's name (np.ones(..., dtype=dtype) works); after
    reset_states() tfrnn starts from the cell's initial state again, where tf-keras zeroes."""

    class OnesCell(tf_keras.layers.AbstractRNNCell):
        state_size = 1
        output_size = 2

        def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
            return np.ones((batch_size, 1), dtype=dtype)

        def call(self, inputs, states):
            return inputs, [states[0] + 1.0]

    x = np.ones((4, 3, 2), np.float32)
    states = {}
    for layers in (tfrnn.tf_keras, tf_keras.layers):
        layer = layers.RNN(OnesCell(), stateful=True, return_state=True)
        inputs = tf_keras.Input((3, 2), batch_size=4)
        output, state = tf_keras.Model(inputs, layer(inputs)).predict_on_batch(x)
        assert_close(output, x[:, -1], 0.0, layers.__name__)
        assert_close(state, np.full((4, 1), 4.0), 0.0, layers.__name__)
        layer.reset_states()
        states[layers.__name__] = layer.states[0].numpy()
    assert_close(states["tfrnn.tf_keras"], np.ones((4, 1)), 0.0, "tfrnn: the cell's initial state")
    assert_close(states["tf_keras.layers"], np.zeros((4, 1)), 0.0, "tf-keras: zeros")


def test_reset_states_refuses_what_tf_keras_refuses():
    for layers in (tfrnn.tf_keras, tf_keras.layers):
        with pytest.raises(AttributeError, match="Layer must be stateful"):
            layers.LSTM(UNITS).reset_states()
        with pytest.raises(ValueError, match="it needs to know its batch size"):
            layers.LSTM(UNITS, stateful=True).reset_states()
    # tfrnn also takes the states before the first call (their batch is the layer's).
    layer = tfrnn.tf_keras.LSTM(UNITS, stateful=True)
    layer.reset_states(states=[np.ones([BATCH, UNITS])] * 2)
    assert [v.shape.as_list() for v in layer.states] == [[BATCH, UNITS]] * 2


class _ScaledStack(tf_keras.layers.StackedRNNCells):
    """A tf-keras stack subclass whose own `call` doubles the output."""

    def call(self, inputs, states, constants=None, training=None, **kwargs):
        output, new_states = super().call(inputs, states, constants=constants, training=training, **kwargs)
        return output * 2.0, new_states


def test_a_tf_keras_stack_subclass_is_kept_with_its_call_and_state_order():
    """A tf-keras StackedRNNCells (subclass) stays the cell: its `call` runs and
    `reverse_state_order` orders the states, as tf-keras' RNN runs it."""
    def stack():
        # Cells of equal state sizes: tf-keras' own reversed repacking fails on others.
        return _ScaledStack([tf_keras.layers.LSTMCell(UNITS), tf_keras.layers.LSTMCell(UNITS)],
                            reverse_state_order=True)

    ours, theirs = tfrnn.tf_keras.RNN(stack(), return_state=True), tf_keras.layers.RNN(stack(), return_state=True)
    inputs = random_array(39, BATCH, TIME, FEATURES)
    copy_weights(ours, theirs, inputs.shape)
    assert isinstance(ours.cell, _ScaledStack) and ours.cell.state_size == theirs.cell.state_size
    expected, results = theirs(inputs), ours(inputs)
    tf.nest.assert_same_structure(results, expected)
    assert_all_close(results, expected, 1e-5)


def _nested_twins(state_type=None, **options):
    """`(ours, theirs)` RNNs of the guide's NestedCell, built and holding the same weights;
    and (x1, x2) data. (Stacks of nested cells are not covered: the core's StackedRNNCells
    builds its cells for one input shape.)"""
    from keras_twins import NestedCell

    ours = tfrnn.tf_keras.RNN(NestedCell(2, 3, 4, state_type), **options)
    theirs = tf_keras.layers.RNN(NestedCell(2, 3, 4, state_type), **options)
    batch = options.get("stateful") and BATCH
    shapes = (tf.TensorShape([batch or None, TIME, FEATURES]), tf.TensorShape([batch or None, TIME, 2, 5]))
    for layer in (theirs, ours):
        layer.build(shapes)
    ours.set_weights(theirs.get_weights())
    data = (random_array(40, BATCH, TIME, FEATURES), random_array(41, BATCH, TIME, 2, 5))
    return ours, theirs, data


NESTED_MATRIX = all_pairs(
    {
        "state_type": (None, "namedtuple"),
        "return_sequences": (False, True),
        "return_state": (False, True),
        "stateful": (False, True),
        "input_type": ("tuple", "namedtuple"),
    }
)


@pytest.mark.parametrize("case", NESTED_MATRIX, ids=case_id)
def test_nested_inputs_outputs_and_states_match_tf_keras(case):
    """The Keras RNN guide's nested cell (tuple or namedtuple inputs and states):
    the same results, nested the same, eagerly and in a functional model."""
    import collections

    pair = collections.namedtuple("Pair", ["t1", "t2"])
    state_type = collections.namedtuple("State", ["s1", "s2"]) if case["state_type"] else None
    options = {k: case[k] for k in ("return_sequences", "return_state", "stateful")}
    ours, theirs, data = _nested_twins(state_type, **options)
    if case["input_type"] == "namedtuple":
        data = pair(*data)
    expected, results = theirs(data), ours(data)
    tf.nest.assert_same_structure(results, expected)
    assert_all_close(results, expected, 1e-5)
    inputs = tuple(tf_keras.Input(x.shape[1:], batch_size=BATCH if case["stateful"] else None) for x in data)
    if case["input_type"] == "namedtuple":
        inputs = pair(*inputs)
    symbolic = ours(inputs), theirs(inputs)
    assert [t.shape.as_list() for t in tf.nest.flatten(symbolic[0])] == [
        t.shape.as_list() for t in tf.nest.flatten(symbolic[1])]


def test_nested_initial_states_are_taken_as_tf_keras_takes_them():
    ours, theirs, data = _nested_twins(return_state=True, return_sequences=True)
    states = (tf.constant(random_array(42, BATCH, 2)), tf.constant(random_array(43, BATCH, 3, 4)))
    assert_all_close(ours(data, initial_state=states), theirs(data, initial_state=states), 1e-5)
    x1, x2, s1, s2 = (tf_keras.Input(tuple(v.shape[1:])) for v in (*data, *states))
    models = [tf_keras.Model([x1, x2, s1, s2], layer((x1, x2), initial_state=(s1, s2))[:2]) for layer in (ours, theirs)]
    assert models[0].output_shape == models[1].output_shape == [(None, TIME, 2), (None, TIME, 3, 4)]
    assert_all_close(models[0]([*data, *states]), models[1]([*data, *states]), 1e-5)


def test_cells_sized_in_build_and_stateless_cells_match_tf_keras():
    """A cell that sets output_size in build() (with a mask and an initial state), and one
    without states (`state_size = ((), [], ())`)."""
    from keras_twins import BuildTimeSizesCell, StatelessCell

    x_np = np.array([[[1.0], [2.0], [0.0]]], np.float32)
    results = []
    for layers in (tfrnn.tf_keras, tf_keras.layers):
        x, s = tf_keras.Input((3, 1)), tf_keras.Input((1,))
        y, state = layers.RNN(BuildTimeSizesCell(1), return_state=True)(tf_keras.layers.Masking()(x), initial_state=s)
        results.append(tf_keras.Model([x, s], [y, state]).predict_on_batch([x_np, np.array([[10.0]], np.float32)]))
        cell = StatelessCell()
        x = tf_keras.Input((None, FEATURES))
        y = layers.RNN(cell)(x, initial_state=tf.nest.map_structure(lambda _: None, cell.state_size))
        results.append(tf_keras.Model(x, y).predict_on_batch(random_array(44, BATCH, TIME, FEATURES)))
    assert_all_close(results[:2], results[2:], 0.0)
    assert_close(results[0][1], [[12.0]], 0.0, "1 added twice: the masked step carries the state")


# -- bad input: a ValueError/TypeError naming the argument, expected vs. received ------------


@pytest.fixture(scope="module")
def built_lstm():
    layer = tfrnn.tf_keras.LSTM(UNITS, name="lstm_bad_input")
    layer(np.zeros([BATCH, TIME, FEATURES], np.float32))
    return layer


def _unchanged(layer, before):
    return all(np.array_equal(w, b) for w, b in zip(layer.get_weights(), before))


@pytest.mark.parametrize(
    "weights, message",
    [
        (lambda w: w[:2], r"weights of lstm_bad_input must be 3 arrays \(kernel \[4, 24\], "
                          r"recurrent_kernel \[6, 24\], bias \[24\]\), got 2 tensors of shape \[4, 24\], \[6, 24\]"),
        (lambda w: [w[0][:3], w[1], w[2]], r"weights\[0\] of lstm_bad_input \(kernel\) must have "
                                           r"shape \[4, 24\], got shape \[3, 24\]"),
        (lambda w: [w[0], w[1], w[2][:-1]], r"weights\[2\] of lstm_bad_input \(bias\) must have shape \[24\], got shape \[23\]"),
    ],
    ids=["count", "kernel-shape", "last-shape"],
)
def test_set_weights_with_wrong_shapes_changes_nothing(built_lstm, weights, message):
    before = built_lstm.get_weights()
    with pytest.raises(ValueError, match=message):
        built_lstm.set_weights(weights([np.ones_like(w) for w in before]))
    assert _unchanged(built_lstm, before)


def test_load_own_variables_with_the_wrong_count_changes_nothing(built_lstm):
    before = built_lstm.get_weights()
    with pytest.raises(ValueError, match=r"saved variables of lstm_bad_input must be 3 arrays .* got 1 tensor"):
        built_lstm.load_own_variables({"0": np.ones([FEATURES, 4 * UNITS])})
    assert _unchanged(built_lstm, before)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda layer: layer(np.zeros([BATCH, FEATURES], np.float32)), ValueError,
         r"inputs must have rank >= 3, \[batch, timesteps, features...\], got shape \[3, 4\]"),
        (lambda layer: layer(np.zeros([BATCH, TIME, FEATURES], np.float32),
                             mask=np.ones([BATCH, TIME + 1], bool)), ValueError,
         r"mask must have shape \[batch, timesteps\] = \[3, 5\] to match inputs of shape "
         r"\[3, 5, 4\], got shape \[3, 6\]"),
        (lambda layer: layer(np.zeros([BATCH, TIME, FEATURES], np.float32),
                             initial_state=[np.zeros([BATCH, UNITS], np.float32)]), ValueError,
         r"initial_state must have 2 tensors \(h, c\) of shape \[3, 6\], \[3, 6\], got 1 tensor"),
        (lambda layer: layer.compute_output_shape((None, FEATURES)), ValueError,
         r"inputs of lstm_bad_input must have rank >= 3, \[batch, timesteps, features...\], "
         r"got input_shape \(None, 4\)"),
        (lambda layer: layer.reset_states(), AttributeError, "Layer must be stateful. .* stateful=False"),
    ],
    ids=["rank", "mask-time", "initial-state", "output-shape-rank", "reset-stateless"],
)
def test_bad_calls_are_named(built_lstm, call, error, message):
    with pytest.raises(error, match=message):
        call(built_lstm)


def test_stateful_layer_needs_a_fixed_batch_size():
    with pytest.raises(ValueError, match=r"lstm_unbatched is stateful, so it needs a fixed batch "
                                         r"size, got input_shape \(None, None, 4\) .* batch_size="):
        tfrnn.tf_keras.LSTM(UNITS, stateful=True, name="lstm_unbatched")(tf_keras.Input((None, FEATURES)))


def test_stateful_layer_rejects_other_batch_sizes_and_bad_states():
    layer = tfrnn.tf_keras.GRU(UNITS, stateful=True)
    layer(np.ones([2, TIME, FEATURES], np.float32))
    before = [v.numpy() for v in layer.states]
    with pytest.raises(ValueError, match="holds states for batch size 2, got inputs with batch size 3"):
        layer(np.ones([3, TIME, FEATURES], np.float32))
    with pytest.raises(ValueError, match=r"states must have 1 tensor \(h\) of shape \[2, 6\], got 1 tensor of shape \[2, 5\]"):
        layer.reset_states(states=[np.zeros([2, 5])])
    assert all(np.array_equal(v.numpy(), b) for v, b in zip(layer.states, before))


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: tfrnn.tf_keras.LSTM(UNITS, time_major="yes"), TypeError, "time_major must be a bool, got str"),
        (lambda: tfrnn.tf_keras.GRU(UNITS, return_sequences=1), TypeError, "return_sequences must be a bool, got int"),
        (lambda: tfrnn.tf_keras.LSTM(UNITS, implementation=3), ValueError, "implementation must be 1 or 2, got 3"),
        (lambda: tfrnn.tf_keras.SimpleRNN(0), ValueError, "units must be a positive int, got 0"),
        (lambda: tfrnn.tf_keras.LSTM(UNITS, dropout=1.5), ValueError, r"dropout must be in \[0, 1\), got 1.5"),
        (lambda: tfrnn.tf_keras.RNN(object()), TypeError, "cell must have a call"),
        (lambda: tfrnn.tf_keras.RNN.from_config({"cell": {"module": "tfrnn", "class_name": "Nope", "config": {}}}),
         ValueError, "cell config names an unknown tfrnn cell 'Nope'"),
    ],
    ids=["time-major", "flag", "implementation", "units", "dropout", "cell", "config-cell"],
)
def test_bad_construction_is_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_cells_without_a_config_cannot_be_serialized():
    class PlainCell(tf.Module):
        state_size = UNITS

        def __call__(self, inputs, states):
            return states[0], states

    with pytest.raises(NotImplementedError, match="cell PlainCell cannot be serialized: it has no get_config"):
        tfrnn.tf_keras.RNN(PlainCell()).get_config()


# -- tfrnn's extension: LSTM(projection_units=...) --------------------------------------------

PROJECTION = 2


@pytest.fixture(scope="module")
def projected():
    """A model of one projected tfrnn.tf_keras.LSTM (loop not XLA-compiled) and the layer."""
    inputs = tf_keras.Input((None, FEATURES))
    layer = tfrnn.tf_keras.LSTM(
        UNITS, projection_units=PROJECTION, return_sequences=True, return_state=True, seed=3,
        jit_compile=False,
    )  # fmt: skip
    return tf_keras.Model(inputs, layer(inputs)), layer


def test_projected_lstm_matches_the_core_cell(projected):
    model, layer = projected
    assert model.output_shape == [(None, None, PROJECTION), (None, PROJECTION), (None, UNITS)]
    shapes = [(FEATURES, 4 * UNITS), (PROJECTION, 4 * UNITS), (4 * UNITS,), (UNITS, PROJECTION)]
    assert [w.shape for w in layer.get_weights()] == shapes and layer.projection_units == PROJECTION
    assert layer.cell.projection_kernel.name == f"{layer.name}/lstm_cell/projection_kernel:0"
    cell = tfrnn.LSTMCell(UNITS, projection_units=PROJECTION)
    cell.build([None, FEATURES])
    cell.set_weights(layer.get_weights())
    reference = tfrnn.RNN(cell, return_sequences=True, return_state=True, jit_compile=False)
    x, mask = tf.constant(random_array(40, BATCH, TIME, FEATURES)), tf.constant(random_mask(41, BATCH, TIME))
    results = []
    for run, weights in ((layer, layer.trainable_weights), (reference, cell.weights)):
        with tf.GradientTape() as tape:
            outputs = run(x, mask=mask)
            loss = sum(tf.reduce_sum(o * random_array(42 + i, *o.shape)) for i, o in enumerate(outputs))
        results.append((outputs, tape.gradient(loss, list(weights))))
    for name, ours, theirs in zip(("outputs", "h", "c"), results[0][0], results[1][0]):
        assert_close(ours, theirs, 1e-5, name)
    for name, ours, theirs in zip(("kernel", "recurrent", "bias", "projection"), results[0][1], results[1][1]):
        assert_close(ours, theirs, 1e-5, f"d {name}")


def test_projected_lstm_config_and_model_files_round_trip(projected, tmp_path):
    model, layer = projected
    config = layer.get_config()
    assert config["projection_units"] == PROJECTION
    assert tfrnn.tf_keras.LSTM.from_config(config).get_config() == config
    assert tfrnn.tf_keras.LSTM(UNITS).get_config()["projection_units"] is None
    x = random_array(43, BATCH, TIME, FEATURES)
    for suffix in ("keras", "h5"):
        model.save(tmp_path / f"projected.{suffix}")
        loaded = tf_keras.models.load_model(tmp_path / f"projected.{suffix}")
        for ours, theirs in zip(loaded(x), model(x)):
            assert_close(ours, theirs, 1e-6, f"loaded {suffix}")


def test_projected_lstm_exports(tmp_path):
    from tfrnn import export

    inputs = tf_keras.Input((None, FEATURES))
    model = tf_keras.Model(inputs, tfrnn.tf_keras.LSTM(UNITS, projection_units=PROJECTION, seed=4)(inputs))
    result = export.export_saved_model(model, str(tmp_path / "projected"))
    assert max(result.max_abs_error.values()) <= 1e-5
    loaded = tf.saved_model.load(result.path)
    x = random_array(44, 2, TIME, FEATURES)
    assert_close(loaded.signatures["serving_default"](inputs=x)["outputs"], model(x), 1e-5, "export")


@pytest.mark.parametrize("value", [0, -1, 2.5])
def test_projection_units_must_be_positive(value):
    with pytest.raises(ValueError, match=f"projection_units must be a positive int or None, got {value!r}"):
        tfrnn.tf_keras.LSTM(UNITS, projection_units=value)


def test_projected_lstm_initial_state_of_the_wrong_shape(projected):
    _, layer = projected
    wrong = [tf.zeros([BATCH, UNITS]), tf.zeros([BATCH, UNITS])]
    message = rf"initial_state must have 2 tensors \(h, c\) of shape \[{BATCH}, {PROJECTION}\], \[{BATCH}, {UNITS}\], got 2 tensors of shape \[{BATCH}, {UNITS}\], \[{BATCH}, {UNITS}\]"
    with pytest.raises(ValueError, match=message):
        layer(tf.zeros([BATCH, TIME, FEATURES]), initial_state=wrong)
