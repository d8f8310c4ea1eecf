"""tfrnn.RNN against tf_keras.layers.RNN with the same weights, over generated option matrices."""

import numpy as np
import pytest
import tensorflow as tf
import keras
import tf_keras

import tfrnn
from conftest import assert_close, call_in, random_array, random_mask
from keras_twins import CELL_KINDS, MinimalRNNCell, twin_cells
from matrix import all_pairs, case_id

BATCH, TIME, FEATURES, UNITS = 3, 5, 4, 6

PARITY_MATRIX = all_pairs(
    {
        "cell": CELL_KINDS,
        "return_sequences": (False, True),
        "return_state": (False, True),
        "go_backwards": (False, True),
        "mask": (None, "random"),
        "zero_output_for_mask": (False, True),
        "initial_state": (None, "flat", "nested"),
        "execution": ("jit-while", "jit-unroll", "while", "unroll"),
        "caller": ("eager", "function", "jit"),
    },
    # Nested initial states only mean something for stacked cells.
    allowed=lambda c: c["initial_state"] != "nested" or c["cell"] == "stacked",
)


def _keras_reference(keras_cell, case, inputs, mask, initial_state):
    """tf-keras' results and gradients (its while-loop path, eagerly).

    The results are `[output, *states]` with `return_state`, else `[output]`; the gradients
    are those of `_loss(results)` with respect to inputs, initial states and weights.
    """
    zero_output = case["zero_output_for_mask"] and case["return_sequences"]
    layer = tf_keras.layers.RNN(
        keras_cell,
        return_sequences=case["return_sequences"],
        return_state=True,
        go_backwards=case["go_backwards"],
        zero_output_for_mask=zero_output,
    )
    keras_state = initial_state or None
    if case["cell"] == "stacked" and initial_state:
        keras_state = [initial_state[:2], initial_state[2]]  # tf-keras wants one entry per cell
    with tf.GradientTape() as tape:
        tape.watch([inputs] + initial_state)
        results = tf.nest.flatten(layer(inputs, mask=mask, initial_state=keras_state))
        results = results if case["return_state"] else results[:1]
        loss = _loss(results)
    weights = layer.trainable_variables
    grads = tape.gradient(loss, [inputs] + initial_state + weights)
    return [r.numpy() for r in results], [g.numpy() for g in grads]


def _loss(results):
    """A weighted sum of every output and state, so each gets a distinct gradient."""
    total = 0.0
    for index, tensor in enumerate(results):
        weights = tf.constant(random_array(100 + index, *tensor.shape.as_list()))
        total += tf.reduce_sum(tensor * weights)
    return total


def _initial_state_for(kind, cell_kind):
    """(flat list for tf-keras, the argument tfrnn receives)."""
    if kind is None:
        return [], None
    if cell_kind == "stacked":
        sizes = [UNITS, UNITS, UNITS + 1]
        flat = [tf.constant(random_array(50 + i, BATCH, size)) for i, size in enumerate(sizes)]
        return flat, ([[flat[0], flat[1]], flat[2]] if kind == "nested" else flat)
    count = 2 if cell_kind == "lstm" else 1
    flat = [tf.constant(random_array(50 + i, BATCH, UNITS)) for i in range(count)]
    return flat, flat


@pytest.mark.parametrize("case", PARITY_MATRIX, ids=case_id)
def test_matches_tf_keras(case):
    ours_cell, keras_cell = twin_cells(case["cell"], UNITS, FEATURES)
    inputs = tf.constant(random_array(1, BATCH, TIME, FEATURES))
    mask = tf.constant(random_mask(2, BATCH, TIME)) if case["mask"] else None
    flat_state, state_argument = _initial_state_for(case["initial_state"], case["cell"])
    expected, expected_grads = _keras_reference(keras_cell, case, inputs, mask, flat_state)

    rnn = tfrnn.RNN(
        ours_cell,
        return_sequences=case["return_sequences"],
        return_state=case["return_state"],
        go_backwards=case["go_backwards"],
        zero_output_for_mask=case["zero_output_for_mask"],
        jit_compile=case["execution"].startswith("jit"),
        unroll=case["execution"].endswith("unroll"),
    )
    rnn.build(inputs.shape)
    weights = list(rnn.trainable_variables)

    def run(inputs, initial_state):
        with tf.GradientTape() as tape:
            tape.watch([inputs] + tf.nest.flatten(initial_state or []))
            results = rnn(inputs, mask=mask, initial_state=initial_state)
            results = results if case["return_state"] else [results]
            loss = _loss(results)
        grads = tape.gradient(loss, [inputs] + tf.nest.flatten(initial_state or []) + weights)
        return results, grads

    results, grads = call_in(case["caller"], run, inputs, state_argument)
    assert len(results) == len(expected)
    for index, (ours, theirs) in enumerate(zip(results, expected)):
        assert_close(ours, theirs, 1e-5, f"result {index}")
    assert len(grads) == len(expected_grads)
    for index, (ours, theirs) in enumerate(zip(grads, expected_grads)):
        assert_close(ours, theirs, 1e-4, f"gradient {index}")


def test_weights_follow_keras_order_and_names():
    lstm, keras_lstm = twin_cells("lstm", UNITS, FEATURES)
    assert [v.name.split("/")[-1] for v in lstm.weights] == [
        "kernel:0",
        "recurrent_kernel:0",
        "bias:0",
    ]
    assert [v.shape for v in lstm.weights] == [w.shape for w in keras_lstm.weights]


MASK_SEMANTICS = [
    dict(go_backwards=g, zero_output_for_mask=z, return_sequences=r)
    for g in (False, True)
    for z in (False, True)
    for r in (False, True)
]


@pytest.fixture(scope="module")
def lstm_twins():
    return twin_cells("lstm", UNITS, FEATURES)


@pytest.mark.parametrize("options", MASK_SEMANTICS, ids=case_id)
def test_mask_semantics_match_keras(options, lstm_twins):
    """Every mask option against tf-keras (Keras' docs rule for zero_output_for_mask)."""
    ours_cell, keras_cell = lstm_twins
    inputs = tf.constant(random_array(3, BATCH, TIME, FEATURES))
    mask = tf.constant(random_mask(4, BATCH, TIME))
    reference_options = dict(options)
    reference_options["zero_output_for_mask"] = (
        options["zero_output_for_mask"] and options["return_sequences"]
    )
    reference = tf_keras.layers.RNN(keras_cell, return_state=True, **reference_options)
    expected = reference(inputs, mask=mask)
    ours = tfrnn.RNN(ours_cell, return_state=True, jit_compile=False, **options)(inputs, mask=mask)
    for index, (a, b) in enumerate(zip(ours, expected)):
        assert_close(a, b, 1e-5, f"result {index}")


def test_zero_output_for_mask_leaves_last_output_alone():
    """keras#17596: tf-keras zeroes the last output; the Keras docs (and tfrnn) do not."""
    ours_cell, keras_cell = twin_cells("simple", UNITS, FEATURES)
    inputs = tf.constant(random_array(5, BATCH, TIME, FEATURES))
    mask = np.ones([BATCH, TIME], bool)
    mask[:, -1] = False
    ours = tfrnn.RNN(ours_cell, zero_output_for_mask=True, jit_compile=False)(inputs, mask=mask)
    buggy = tf_keras.layers.RNN(keras_cell, zero_output_for_mask=True)(inputs, mask=mask)
    documented = tf_keras.layers.RNN(keras_cell)(inputs, mask=mask)
    assert_close(ours, documented, 1e-6, "documented last output")
    assert np.abs(buggy.numpy()).max() == 0.0
    assert np.abs(ours.numpy()).max() > 0.0


def test_all_masked_rows_and_leading_masked_steps_are_ordinary_input():
    ours_cell, keras_cell = twin_cells("gru", UNITS, FEATURES)
    inputs = tf.constant(random_array(6, BATCH, TIME, FEATURES))
    mask = np.zeros([BATCH, TIME], bool)
    mask[1, 2:] = True
    rnn = tfrnn.RNN(ours_cell, return_sequences=True, return_state=True)
    outputs, state = rnn(inputs, mask=mask)
    np.testing.assert_array_equal(outputs.numpy()[0], 0.0)
    np.testing.assert_array_equal(state.numpy()[0], 0.0)
    np.testing.assert_array_equal(outputs.numpy()[1, :2], 0.0)
    expected = tf_keras.layers.RNN(keras_cell, return_sequences=True)(inputs, mask=mask)
    assert_close(outputs, expected, 1e-5)


def test_variable_timesteps_one_function_serves_several_lengths():
    cell = tfrnn.LSTMCell(UNITS)
    rnn = tfrnn.RNN(cell, return_sequences=True)
    rnn.build([None, None, FEATURES])
    reference = tfrnn.RNN(cell, return_sequences=True, jit_compile=False)

    @tf.function(input_signature=[tf.TensorSpec([None, None, FEATURES], tf.float32)])
    def serve(inputs):
        return rnn(inputs)

    for batch, timesteps in [(2, 3), (1, 7), (4, 1)]:
        inputs = tf.constant(random_array(timesteps, batch, timesteps, FEATURES))
        assert_close(serve(inputs), reference(inputs), 1e-5, f"length {timesteps}")
    assert serve.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_a_first_call_inside_an_autograph_function_builds_and_matches(kind):
    """A user's `tf.function` runs tfrnn's code through AutoGraph (its default) and, on a
    first call, the cell's `build` too (docs/performance.md: this failed once, not again)."""
    cell = (tfrnn.LSTMCell if kind == "lstm" else tfrnn.GRUCell)(UNITS, seed=0)
    rnn = tfrnn.RNN(cell)
    serve = tf.function(lambda x: rnn(x), input_signature=[tf.TensorSpec([None, None, FEATURES])])
    inputs = tf.constant(random_array(3, BATCH, TIME, FEATURES))
    output = serve(inputs)
    assert cell.built
    assert_close(output, tfrnn.RNN(cell, jit_compile=False)(inputs), 1e-5, kind)


class ScaledConstantCell(tf.Module):
    """A cell that takes `constants`: h' = tanh(x W + h U) * scale."""

    def __init__(self, units, features):
        super().__init__()
        self.state_size = units
        self.output_size = units
        self.kernel = tf.Variable(random_array(7, features, units))
        self.recurrent = tf.Variable(random_array(8, units, units) * 0.3)

    def call(self, inputs, states, constants):
        h = tf.tanh(inputs @ self.kernel + states[0] @ self.recurrent) * constants[0]
        return h, [h]


@pytest.mark.parametrize("jit_compile", [True, False])
def test_constants_reach_every_step(jit_compile):
    cell = ScaledConstantCell(UNITS, FEATURES)
    inputs = random_array(9, BATCH, TIME, FEATURES)
    scale = np.abs(random_array(10, BATCH, UNITS))
    rnn = tfrnn.RNN(cell, return_sequences=True, jit_compile=jit_compile)
    outputs = rnn(inputs, constants=[scale])
    h = np.zeros([BATCH, UNITS], np.float32)
    for t in range(TIME):
        h = np.tanh(inputs[:, t] @ cell.kernel.numpy() + h @ cell.recurrent.numpy()) * scale
        assert_close(outputs[:, t], h, 1e-5, f"step {t}")


class MatrixStateCell(tf.Module):
    """A plain tf.Module cell whose state is a [2, 3] matrix per example."""

    state_size = tf.TensorShape([2, 3])
    output_size = 6

    def __init__(self, features):
        super().__init__()
        self.kernel = tf.Variable(random_array(11, features, 6) * 0.5)

    def __call__(self, inputs, states):
        state = tf.tanh(states[0] + tf.reshape(inputs @ self.kernel, [-1, 2, 3]))
        return tf.reshape(state, [-1, 6]), [state]


def test_high_dimensional_state_from_a_plain_module():
    cell = MatrixStateCell(FEATURES)
    inputs = random_array(12, BATCH, TIME, FEATURES)
    output, state = tfrnn.RNN(cell, return_state=True)(inputs)
    expected = np.zeros([BATCH, 2, 3], np.float32)
    for t in range(TIME):
        expected = np.tanh(expected + (inputs[:, t] @ cell.kernel.numpy()).reshape(-1, 2, 3))
    assert state.shape == [BATCH, 2, 3]
    assert_close(state, expected, 1e-5)
    assert_close(output, expected.reshape(BATCH, 6), 1e-5)


@pytest.mark.parametrize("stacked", [False, True], ids=["single", "stacked"])
def test_keras_docs_minimal_rnn_cell(stacked):
    cells = [MinimalRNNCell(32), MinimalRNNCell(64)] if stacked else MinimalRNNCell(32)
    inputs = random_array(13, 2, 7, 5)
    ours = tfrnn.RNN(cells, return_state=True)
    results = ours(inputs)
    # The same cell objects (same weights) inside tf-keras' own RNN layer.
    expected = tf_keras.layers.RNN(cells, return_state=True)(inputs)
    assert results[0].shape == [2, 64 if stacked else 32]
    for a, b in zip(results, expected):
        assert_close(a, b, 1e-5)


def test_keras3_layer_cell():
    import keras

    class Keras3Cell(keras.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = units

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
            self.recurrent_kernel = self.add_weight(
                shape=(self.units, self.units), name="recurrent_kernel"
            )

        def call(self, inputs, states):
            output = keras.ops.tanh(
                keras.ops.matmul(inputs, self.kernel)
                + keras.ops.matmul(states[0], self.recurrent_kernel)
            )
            return output, [output]

    cells = [Keras3Cell(8), Keras3Cell(4)]
    inputs = random_array(14, 2, 6, 5)
    rnn = tfrnn.RNN(cells, return_sequences=True)
    with tf.GradientTape() as tape:
        outputs = rnn(inputs)
        loss = tf.reduce_sum(outputs)
    grads = tape.gradient(loss, rnn.trainable_variables)
    assert len(rnn.trainable_variables) == 4
    assert all(g is not None for g in grads)
    # Reference: Keras 3's own RNN layer over the same cell objects.
    expected = keras.layers.RNN(cells, return_sequences=True)(inputs)
    assert_close(outputs, np.asarray(expected), 1e-5)


# -- bad input: a ValueError/TypeError naming the argument, expected vs. received ----------


@pytest.fixture(scope="module")
def built_lstm_rnn():
    rnn = tfrnn.RNN(tfrnn.LSTMCell(UNITS), return_state=True)
    rnn(tf.zeros([BATCH, TIME, FEATURES]))
    return rnn


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda rnn: rnn(tf.zeros([BATCH, FEATURES])), ValueError,
         r"inputs must have rank >= 3, \[batch, timesteps, features...\], got shape \[3, 4\]"),
        (lambda rnn: rnn(tf.zeros([BATCH, TIME, 7])), ValueError,
         r"inputs has features of shape \[7\], but LSTMCell .* was built for features of shape \[4\]"),
        (lambda rnn: rnn(tf.zeros([BATCH, TIME, FEATURES], tf.int32)), TypeError,
         "inputs must be a floating tensor .* got dtype int32"),
        (lambda rnn: rnn([tf.zeros([BATCH, TIME, FEATURES])]), TypeError,
         "inputs must be one tensor"),
        (lambda rnn: rnn(tf.zeros([BATCH, TIME, FEATURES]), initial_state=[tf.zeros([4, 32])]), ValueError,
         r"initial_state must have 2 tensors \(h, c\) of shape \[3, 6\], \[3, 6\], got 1 tensor of shape \[4, 32\]"),
        (lambda rnn: rnn(tf.zeros([BATCH, TIME, FEATURES]), initial_state=[tf.zeros([BATCH, UNITS])] * 3), ValueError,
         r"initial_state must have 2 tensors .* got 3 tensors of shape \[3, 6\], \[3, 6\], \[3, 6\]"),
        (lambda rnn: rnn(tf.zeros([BATCH, TIME, FEATURES]), mask=tf.ones([BATCH, TIME + 1], tf.bool)), ValueError,
         r"mask must have shape \[batch, timesteps\] = \[3, 5\] to match inputs of shape \[3, 5, 4\], got shape \[3, 6\]"),
        (lambda rnn: rnn(tf.zeros([BATCH, TIME, FEATURES]), mask=tf.ones([BATCH, TIME, 1], tf.bool)), ValueError,
         r"mask must have shape .* got shape \[3, 5, 1\]"),
        (lambda rnn: rnn(tf.zeros([BATCH, TIME, FEATURES]), mask=tf.fill([BATCH, TIME], "yes")), TypeError,
         r"mask must be bool \(or 0/1 numbers\) \[batch, timesteps\], got dtype string"),
        (lambda rnn: rnn(tf.zeros([BATCH, TIME, FEATURES]), constants=[tf.zeros([BATCH, 2])]), ValueError,
         "constants were given, but the cell 'lstm_cell.*' does not take them"),
        (lambda rnn: rnn(tf.zeros([BATCH, TIME, FEATURES]), training="yes"), TypeError,
         "training must be a Python bool"),
    ],
    ids=["rank", "features", "int-inputs", "list-inputs", "state-shape", "state-count",
         "mask-shape", "mask-rank", "mask-dtype", "constants", "training"],
)
def test_bad_input_is_named_at_the_boundary(built_lstm_rnn, call, error, message):
    with pytest.raises(error, match=message):
        call(built_lstm_rnn)


def test_unroll_with_unknown_timesteps():
    rnn = tfrnn.RNN(tfrnn.GRUCell(UNITS), unroll=True)
    fn = tf.function(rnn, input_signature=[tf.TensorSpec([BATCH, None, FEATURES])])
    with pytest.raises(ValueError, match=r"unroll=True needs a static number of timesteps, got inputs of shape \[3, None, 4\]"):
        fn.get_concrete_function()


@pytest.mark.parametrize("flag", ["return_sequences", "return_state", "go_backwards", "stateful",
                                  "unroll", "zero_output_for_mask", "jit_compile"])
def test_flags_must_be_bools(flag):
    with pytest.raises(TypeError, match=f"{flag} must be a bool, got str"):
        tfrnn.RNN(tfrnn.GRUCell(UNITS), **{flag: "True"})


def test_integer_masks_and_numpy_inputs_are_accepted():
    ours_cell, keras_cell = twin_cells("gru", UNITS, FEATURES)
    inputs = random_array(15, BATCH, TIME, FEATURES).astype(np.float64)
    mask = random_mask(16, BATCH, TIME)
    result = tfrnn.RNN(ours_cell)(inputs, mask=mask.astype(np.int32))
    expected = tf_keras.layers.RNN(keras_cell)(inputs.astype(np.float32), mask=mask)
    assert result.dtype == tf.float32
    assert_close(result, expected, 1e-5)


@pytest.mark.parametrize(
    "symbolic, argument, adapter",
    [
        (lambda: keras.Input((None, FEATURES)), "inputs", r"Keras 3 symbolic tensor \(keras.Input\): in a Keras 3 model use tfrnn.keras.RNN"),
        (lambda: tf_keras.Input((None, FEATURES)), "inputs", r"tf-keras symbolic tensor \(tf_keras.Input\): in a tf-keras model use tfrnn.tf_keras.RNN"),
        (lambda: keras.Input((UNITS,)), "initial_state", "Keras 3 symbolic tensor"),
    ],
    ids=["keras3-inputs", "tf-keras-inputs", "keras3-initial-state"],
)
def test_a_keras_symbolic_tensor_says_which_adapter_to_use(built_lstm_rnn, symbolic, argument, adapter):
    tensor = symbolic()
    states = dict(inputs=tf.zeros([BATCH, TIME, FEATURES]))
    if argument == "inputs":
        states["inputs"] = tensor
    else:
        states["initial_state"] = [tensor, tensor]
    with pytest.raises(TypeError, match=f"{argument} is a .*{adapter}"):
        built_lstm_rnn(**states)


# -- ragged inputs: a RaggedTensor equals its padded values with the mask of its lengths -------

RAGGED_MATRIX = all_pairs(
    {
        "cell": CELL_KINDS,
        "return_sequences": (False, True),
        "go_backwards": (False, True),
        "zero_output_for_mask": (False, True),
        # XLA has no kernels for ragged tensors: a jit_compile caller cannot hold them (the
        # RNN's own loop still compiles).
        "caller": ("eager", "function"),
    }
)
ROW_LENGTHS = [2, 1, TIME]


@pytest.mark.parametrize("case", RAGGED_MATRIX, ids=case_id)
def test_ragged_inputs_match_tf_keras_with_gradients(case):
    """A RaggedTensor batch gives tf-keras' results and gradients (return_sequences: ragged)."""
    ours_cell, keras_cell = twin_cells(case["cell"], UNITS, FEATURES)
    options = {k: case[k] for k in ("return_sequences", "go_backwards", "zero_output_for_mask")}
    values = tf.constant(random_array(30, sum(ROW_LENGTHS), FEATURES))
    rnn = tfrnn.RNN(ours_cell, **options)

    def run(flat):
        with tf.GradientTape() as tape:
            tape.watch(flat)
            output = rnn(tf.RaggedTensor.from_row_lengths(flat, ROW_LENGTHS))
            dense = output.to_tensor() if isinstance(output, tf.RaggedTensor) else output
            loss = tf.reduce_sum(dense * dense)
        return output, tf.convert_to_tensor(tape.gradient(loss, flat))

    output, grad = call_in(case["caller"], run, values)
    # tf-keras also zeroes a last output at a masked step with zero_output_for_mask
    # (keras#17596); tfrnn returns the last unmasked output, as the Keras docs say.
    reference_options = dict(options, zero_output_for_mask=options["zero_output_for_mask"] and case["return_sequences"])
    layer = tf_keras.layers.RNN(keras_cell, **reference_options)
    with tf.GradientTape() as tape:
        tape.watch(values)
        expected = layer(tf.RaggedTensor.from_row_lengths(values, ROW_LENGTHS))
        dense = expected.to_tensor() if isinstance(expected, tf.RaggedTensor) else expected
        loss = tf.reduce_sum(dense * dense)
    expected_grad = tf.convert_to_tensor(tape.gradient(loss, values))
    assert isinstance(output, tf.RaggedTensor) is case["return_sequences"]
    if case["return_sequences"]:
        assert output.row_lengths().numpy().tolist() == ROW_LENGTHS
        output, expected = output.flat_values, expected.flat_values
    assert_close(output, expected, 1e-5, "outputs")
    assert_close(grad, expected_grad, 1e-4, "gradient of the ragged values")


def test_ragged_inputs_equal_their_padded_values_with_a_mask():
    rnn = tfrnn.RNN(tfrnn.GRUCell(UNITS, seed=3), return_sequences=True, go_backwards=True)
    ragged = tf.RaggedTensor.from_row_lengths(random_array(31, sum(ROW_LENGTHS), FEATURES), ROW_LENGTHS)
    padded = rnn(ragged.to_tensor(), mask=tf.sequence_mask(ROW_LENGTHS, TIME))
    # Backwards the padding comes first in processing order; each row keeps its real steps.
    expected = tf.reverse(tf.RaggedTensor.from_tensor(tf.reverse(padded, [1]), lengths=ROW_LENGTHS), [1])
    assert_close(rnn(ragged).flat_values, expected.flat_values, 1e-6)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda rnn, r: rnn(tf.ragged.constant([[[1.0], [2.0, 3.0]]], ragged_rank=2)),
         r"inputs must be ragged in the time axis only, .* got a RaggedTensor of ragged_rank 2"),
        (lambda rnn, r: rnn(r, mask=tf.ones([3, 3], tf.bool)), r"mask must be None for ragged inputs"),
    ],
    ids=["ragged-features", "ragged-and-mask"],
)
def test_bad_ragged_inputs_are_named(call, message):
    ragged = tf.RaggedTensor.from_row_lengths(random_array(32, 6, 1), [2, 1, 3])
    with pytest.raises(ValueError, match=message):
        call(tfrnn.RNN(tfrnn.SimpleRNNCell(2)), ragged)
    with pytest.raises(ValueError, match="unroll=True needs a static number of timesteps, got ragged inputs"):
        tfrnn.RNN(tfrnn.SimpleRNNCell(2), unroll=True)(ragged)


def test_float_masks_work_like_bool_masks_as_in_tf_keras():
    ours_cell, keras_cell = twin_cells("lstm", UNITS, FEATURES)
    inputs = random_array(33, BATCH, TIME, FEATURES)
    mask = random_mask(34, BATCH, TIME)
    result = tfrnn.RNN(ours_cell, return_sequences=True)(inputs, mask=mask.astype(np.float32))
    expected = tf_keras.layers.RNN(keras_cell, return_sequences=True)(inputs, mask=mask.astype(np.float32))
    assert_close(result, expected, 1e-5)
