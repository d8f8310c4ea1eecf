"""ModelSignatures: streaming one step at a time equals the whole sequence, for whole models."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfrnn
from tfrnn._deploy.signatures import ModelSignatures, TraceOptions
from conftest import assert_close, random_array, random_mask

BATCH, TIME, FEATURES = 3, 5, 2
PLAIN = TraceOptions(jit_compile=False)


class TwoLayers(tf.Module):
    """An LSTM layer under a GRU, a dense head on top: several RNNs and other layers."""

    def __init__(self):
        super().__init__()
        self.lower = tfrnn.RNN(tfrnn.LSTMCell(4, seed=1), return_sequences=True)
        self.upper = tfrnn.RNN(tfrnn.GRUCell(3, seed=2), return_sequences=True)
        self.head = tf.Variable(random_array(3, 3, 2))

    def __call__(self, inputs, mask=None):
        return self.upper(self.lower(inputs, mask=mask), mask=mask) @ self.head


class OffsetStateCell(tf.Module):
    """A custom cell whose initial state is not zeros and whose output is not its state."""

    state_size = 2
    output_size = 2

    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(random_array(4, FEATURES, 2))

    def call(self, inputs, states):
        h = tf.tanh(inputs @ self.kernel + states[0])
        return 2.0 * h, [h]

    def get_initial_state(self, batch_size=None, dtype=None):
        return [tf.ones(tf.stack([batch_size, 2]), dtype or tf.float32)]


def keras_embedding_model():
    tokens = tf_keras.Input((None,), dtype="int32")
    embedded = tf_keras.layers.Embedding(7, FEATURES, mask_zero=True)(tokens)
    hidden = tfrnn.tf_keras.LSTM(4, return_sequences=True, seed=3)(embedded)
    return tf_keras.Model(tokens, tfrnn.tf_keras.GRU(3, seed=4)(hidden))


def stream(signatures, inputs, mask):
    step = signatures.step(PLAIN)
    states = list(signatures.initial_state()(tf.constant(inputs.shape[0])).values())
    outputs = []
    for t in range(inputs.shape[1]):
        args = [inputs[:, t], *states] + ([mask[:, t]] if mask is not None else [])
        result = step(*args)
        outputs.append(result["outputs"].numpy())
        states = [result[f"state_{i}"] for i in range(signatures.num_states)]
    return np.stack(outputs, 1), states


def whole(signatures, inputs, mask):
    args = [inputs] + ([mask] if mask is not None else [])
    return signatures.serving_default(PLAIN)(*args)


@pytest.mark.parametrize("masked", [False, True])
def test_streaming_a_multi_layer_module_equals_the_whole_sequence(masked):
    model = TwoLayers()
    inputs = random_array(0, BATCH, TIME, FEATURES)
    mask = random_mask(1, BATCH, TIME) if masked else None
    model(inputs, mask=mask)
    signatures = ModelSignatures(model, tf.TensorSpec([None, None, FEATURES]), mask=masked)
    assert [s.as_list() for s in signatures.state_shapes] == [[4], [4], [3]]
    streamed, _ = stream(signatures, inputs, mask)
    # Built-in cells output their state h, so masked steps repeat it exactly.
    assert_close(streamed, whole(signatures, inputs, mask)["outputs"], 1e-5, "outputs")
    assert_close(streamed, model(inputs, mask=mask), 1e-5, "outputs vs. the module")


def test_streaming_a_keras_model_with_an_embedding_mask():
    model = keras_embedding_model()
    tokens = np.array([[1, 2, 3, 0, 0], [4, 0, 5, 6, 1], [0, 0, 0, 0, 0]], np.int32)
    signatures = ModelSignatures(model, tf.TensorSpec([None, None], tf.int32))
    assert not signatures.sequence_outputs["outputs"]
    streamed, states = stream(signatures, tokens, None)
    # The last output of the whole sequence is the output at each row's last real token.
    expected = model(tokens)
    assert_close(streamed[:, -1], expected, 1e-5, "last output")
    assert_close(states[-1], expected, 1e-5, "GRU state")


def test_initial_state_comes_from_the_cells_get_initial_state():
    rnn = tfrnn.RNN(OffsetStateCell(), return_sequences=True)
    rnn.build([None, None, FEATURES])
    signatures = ModelSignatures(rnn, tf.TensorSpec([None, None, FEATURES]))
    initial = signatures.initial_state()(tf.constant(2))
    np.testing.assert_array_equal(initial["state_0"].numpy(), np.ones([2, 2], np.float32))
    inputs = random_array(5, 2, TIME, FEATURES)
    streamed, _ = stream(signatures, inputs, None)
    assert_close(streamed, rnn(inputs), 1e-5, "outputs")


def test_a_backwards_rnn_cannot_stream():
    rnn = tfrnn.RNN(tfrnn.GRUCell(2), go_backwards=True)
    rnn.build([None, None, FEATURES])
    signatures = ModelSignatures(rnn, tf.TensorSpec([None, None, FEATURES]))
    assert not signatures.streamable
    with pytest.raises(ValueError, match="go_backwards=True; export with step=False"):
        signatures.step(PLAIN)


@pytest.mark.parametrize(
    "model, spec, message",
    [
        (lambda x: x * 2.0, tf.TensorSpec([None, None, FEATURES]), "calls no tfrnn.RNN"),
        (tfrnn.RNN(tfrnn.GRUCell(2)), tf.TensorSpec([None, FEATURES]), "must be \\[batch, timesteps, features"),
        (tfrnn.RNN(tfrnn.GRUCell(2)), tf.TensorSpec([None, None, None]), "input_spec 'inputs' must give its feature shape"),
    ],
)
def test_bad_models_and_specs_are_named(model, spec, message):
    if spec.shape.rank == 2:
        spec = tf.TensorSpec([None])
    with pytest.raises(ValueError, match=message):
        ModelSignatures(model, spec)
