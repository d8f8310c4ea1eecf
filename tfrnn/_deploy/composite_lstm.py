"""The LSTM as the composite function the TFLite converter fuses into one builtin op.

The converter's `prepare_composite_functions_tf` pass replaces a function whose
`api_implements` attribute starts with `lstm_` by `UNIDIRECTIONAL_SEQUENCE_LSTM`, if the
function looks like tf-keras' standard LSTM: inputs `(inputs [batch, time, features],
init_h, init_c [batch, units], kernel [features, 4 * units], recurrent_kernel
[units, 4 * units], bias [4 * units])`, gate order i, f, c, o, sigmoid gates and tanh, and
results `(last_output, outputs, h, c, runtime)` of which callers use only the first two.
The states and weights need static shapes (a fixed batch); time may be dynamic. When
anything differs the converter keeps the function's body without a word, so `tfrnn.tflite`
checks the converted model for the op.

The body here is tfrnn's own LSTM maths (`lstm_gates`) in a loop of builtin-friendly ops
(outputs gathered into a dense tensor, no TensorArray), so the unfused fallback still runs
on builtin ops, and TensorFlow computes exactly what `tfrnn.RNN(tfrnn.LSTMCell)` does.

Two traps of the fused op are handled here and in `tfrnn.tflite`:
* it keeps h and c in *variable tensors* that it updates in place; a constant initial state
  becomes such a tensor and carries the last call's state into the next `invoke()`
  (tf#47813). A stateless RNN therefore starts from zeros computed from the inputs (see
  `zero_states`), which the converter cannot fold into a constant;
* it clips the cell state to +-10 (`cell_clip`); `lstm_sequence(track_max_c=True)` reports the
  largest |c| a sequence reaches, so the converter tool can say when the clip changes results.

The RNNs reach this code through the trace context (`tfrnn._core.trace_context`): a TFLite
trace sets `FusedLSTM()` (or a `CellStateProbe()`) as its `substitute`, which takes the RNN
calls the fused op can compute (`fusable`) and computes them here.
"""

from __future__ import annotations

import uuid
from typing import Any, Optional

import tensorflow as tf

from tfrnn._core.trace_context import RNNCall
from tfrnn.lstm_cell import LSTMCell, lstm_gates


def eligible(cell: Any) -> bool:
    """Whether `cell` computes what the fused op computes (a plain float32 Keras LSTM).

    A projected LSTM is not: the composite function the converter fuses has no projection.
    """
    return (
        type(cell) is LSTMCell
        and cell.projection_units is None
        and cell.activation_name == "tanh"
        and cell.recurrent_activation_name == "sigmoid"
        and cell.dtype == tf.float32
    )


def zero_states(inputs: tf.Tensor, units: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Zero `h` and `c` `[batch, units]` that depend on `inputs`, so they are not constants.

    `0 * tanh(x)` is an exact zero for every finite or infinite input (tanh bounds it); a NaN
    input gives NaN states, which its outputs would have been anyway. The two states come
    from different features because the fused op must not share one tensor for both.
    """
    first = inputs[:, 0, :]
    features = first.shape[-1]
    zeros = tf.zeros(tf.stack([tf.shape(inputs)[0], units]), inputs.dtype)
    h = zeros + 0.0 * tf.tanh(first[:, :1])
    c = zeros + 0.0 * tf.tanh(first[:, 1:2] if features > 1 else first[:, :1] + 1.0)
    return h, c


def lstm_sequence(
    inputs: tf.Tensor,
    init_h: tf.Tensor,
    init_c: tf.Tensor,
    kernel: tf.Tensor,
    recurrent_kernel: tf.Tensor,
    bias: tf.Tensor,
    track_max_c: bool = False,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, Optional[tf.Tensor]]:
    """An LSTM over `inputs` `[batch, time, features]` in builtin-friendly ops.

    Returns `(last_output, outputs [batch, time, units], h, c, max |c| or None)`.
    """
    inputs_tm = tf.transpose(inputs, [1, 0, 2])
    timesteps = tf.shape(inputs_tm)[0]
    # The input projection of all steps at once: one matmul instead of one per step.
    projected = tf.reshape(
        tf.matmul(tf.reshape(inputs_tm, [-1, inputs.shape[-1]]), kernel) + bias,
        tf.concat([tf.shape(inputs_tm)[:2], [kernel.shape[-1]]], 0),
    )
    outputs = tf.zeros(tf.concat([[timesteps], tf.shape(init_h)], 0), inputs.dtype)
    max_c = tf.zeros([], inputs.dtype)

    def body(t, h, c, outputs, max_c):
        z = tf.gather(projected, t) + tf.matmul(h, recurrent_kernel)
        h, c = lstm_gates(z, c, tf.tanh, tf.sigmoid)
        outputs = tf.tensor_scatter_nd_update(outputs, tf.reshape(t, [1, 1]), h[None])
        if track_max_c:
            max_c = tf.maximum(max_c, tf.reduce_max(tf.abs(c)))
        return t + 1, h, c, outputs, max_c

    _, h, c, outputs, max_c = tf.while_loop(
        lambda t, *_: t < timesteps,
        body,
        [tf.constant(0), init_h, init_c, outputs, max_c],
        maximum_iterations=timesteps,
    )
    return h, tf.transpose(outputs, [1, 0, 2]), h, c, (max_c if track_max_c else None)


def _composite_body(inputs, init_h, init_c, kernel, recurrent_kernel, bias):
    last_output, outputs, h, c, _ = lstm_sequence(
        inputs, init_h, init_c, kernel, recurrent_kernel, bias
    )
    return last_output, outputs, h, c, tf.constant(0.0)


def composite_function() -> tf.types.experimental.GenericFunction:
    """A new `tf.function` with the attributes that mark it as a fusable LSTM.

    Each one gets its own `api_implements` name: the converter fuses per function name, and
    two LSTMs of one model must not share a function.
    """
    return tf.function(
        _composite_body,
        autograph=False,
        experimental_attributes={
            "api_implements": f"lstm_{uuid.uuid4()}",
            "time_major": False,
            "go_backwards": False,
        },
    )


def fused_lstm(
    cell: LSTMCell,
    inputs: tf.Tensor,
    initial_state: Optional[list[tf.Tensor]],
    go_backwards: bool,
    return_sequences: bool,
) -> tf.Tensor:
    """Runs `cell` over `inputs` as the composite function; returns the output only.

    The fused op returns no final states, so only RNNs whose states nobody reads (no
    `return_state`, not stateful, not streamed) take this path.
    """
    if go_backwards:
        # Keras returns the sequence in processing order: reversing the input is all it takes.
        inputs = tf.reverse(inputs, [1])
    if initial_state is None:
        init_h, init_c = zero_states(inputs, cell.units)
    else:
        init_h, init_c = initial_state
    bias = cell.bias if cell.bias is not None else tf.zeros([4 * cell.units], inputs.dtype)
    last_output, outputs, _, _, _ = composite_function()(
        inputs,
        init_h,
        init_c,
        tf.convert_to_tensor(cell.kernel),
        tf.convert_to_tensor(cell.recurrent_kernel),
        tf.convert_to_tensor(bias),
    )
    return outputs if return_sequences else last_output


def probe(
    cell: LSTMCell,
    inputs: tf.Tensor,
    initial_state: Optional[list[tf.Tensor]],
    go_backwards: bool,
    return_sequences: bool,
) -> tuple[tf.Tensor, tf.Tensor]:
    """What `fused_lstm` computes, unfused, with the largest |c| it reaches: `(output, max)`."""
    if go_backwards:
        inputs = tf.reverse(inputs, [1])
    states = initial_state or list(zero_states(inputs, cell.units))
    bias = cell.bias if cell.bias is not None else tf.zeros([4 * cell.units], inputs.dtype)
    last, outputs, _, _, max_c = lstm_sequence(
        inputs, *states, cell.kernel, cell.recurrent_kernel, bias, track_max_c=True
    )
    return (outputs if return_sequences else last), max_c



def fusable(call: RNNCall) -> bool:
    """Whether the fused op can compute `call`: a plain LSTM whose states nobody reads.

    The op returns no final states and takes no mask, and needs a fixed batch.
    """
    return (
        eligible(call.rnn.cell)
        and call.mask is None
        and not call.reads_final_states
        and isinstance(call.inputs, tf.Tensor)
        and call.inputs.shape[0] is not None
    )


class FusedLSTM:
    """The trace context's `substitute` that traces fusable LSTMs as the composite function."""

    def takes(self, call: RNNCall) -> bool:
        return fusable(call)

    def __call__(self, call: RNNCall) -> tf.Tensor:
        rnn = call.rnn
        return fused_lstm(rnn.cell, call.inputs, call.initial_state, rnn.go_backwards, rnn.return_sequences)


class CellStateProbe:
    """A `substitute` that computes fusable LSTMs unfused and keeps their largest |c|.

    `max_abs_cell_state` holds one scalar tensor per LSTM call, in call order.
    """

    def __init__(self):
        self.max_abs_cell_state: list[tf.Tensor] = []

    def takes(self, call: RNNCall) -> bool:
        return fusable(call)

    def __call__(self, call: RNNCall) -> tf.Tensor:
        rnn = call.rnn
        output, max_c = probe(rnn.cell, call.inputs, call.initial_state, rnn.go_backwards, rnn.return_sequences)
        self.max_abs_cell_state.append(max_c)
        return output
