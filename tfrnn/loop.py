"""`rnn_loop`: the time loop, as a free function over any step callable.

It creates no variables and has no Python side effects, so it traces the same eagerly, in a
`tf.function` and under XLA. The sequence is processed time-major inside the loop; the
while-loop path uses `maximum_iterations` and fixed-size `TensorArray`s (what XLA needs to
compile the loop and its gradient), the unrolled path a Python loop over a static time axis.

Masking follows Keras exactly: on a masked step every state carries over unchanged and the
output repeats the previous output (zeros before the first unmasked step); with
`zero_output_for_mask=True` the masked entries of the returned *sequence* are zeros instead.
The last output is always the last unmasked output (Keras' docs; tf-keras also zeroes it,
keras#17596, which tfrnn does not copy).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import tensorflow as tf

from tfrnn._core.time_axis import time_major, where_unmasked

StepFn = Callable[[tf.Tensor, list], tuple[tf.Tensor, list]]


class LoopResult(NamedTuple):
    """What `rnn_loop` returns (batch-major)."""

    last_output: tf.Tensor
    """`[batch, *output_shape]`: the output of the last unmasked step."""
    outputs: Optional[tf.Tensor]
    """`[batch, time, *output_shape]` in processing order, or `None` unless requested."""
    final_states: list
    """The states after the last step, in the order of `initial_states`."""


def _checked_step(
    step_fn: StepFn,
    x_t: tf.Tensor,
    states: list,
    output_spec: tf.TensorSpec,
) -> tuple[tf.Tensor, list]:
    """Runs one step and checks its results against the loop's fixed shapes and dtypes."""
    output, new_states = step_fn(x_t, states)
    output = tf.convert_to_tensor(output)
    if not output.shape.is_compatible_with(output_spec.shape) or output.dtype != output_spec.dtype:
        raise ValueError(
            f"the cell's output has shape {output.shape} and dtype {output.dtype.name}, but its "
            f"output_size says {output_spec.shape} of {output_spec.dtype.name}"
        )
    output.set_shape(output_spec.shape)
    new_states = list(new_states)
    if len(new_states) != len(states):
        raise ValueError(
            f"the cell returned {len(new_states)} new states for {len(states)} states; "
            "a cell must return one new state per state in its state_size"
        )
    checked = []
    for index, (state, new_state) in enumerate(zip(states, new_states)):
        new_state = tf.convert_to_tensor(new_state)
        if not new_state.shape.is_compatible_with(state.shape) or new_state.dtype != state.dtype:
            raise ValueError(
                f"the cell's new state {index} has shape {new_state.shape} and dtype "
                f"{new_state.dtype.name}, but the state has shape {state.shape} and dtype "
                f"{state.dtype.name} (from the cell's state_size)"
            )
        new_state.set_shape(state.shape)
        checked.append(new_state)
    return output, checked


def rnn_loop(
    step_fn: StepFn,
    inputs: tf.Tensor,
    initial_states: Sequence[tf.Tensor],
    *,
    output_spec: tf.TensorSpec,
    mask: Optional[tf.Tensor] = None,
    go_backwards: bool = False,
    unroll: bool = False,
    zero_output_for_mask: bool = False,
    return_sequences: bool = False,
    dense_outputs: bool = False,
    initial_output: Optional[tf.Tensor] = None,
) -> LoopResult:
    """Runs `step_fn` over the time axis of `inputs`.

    Args:
      step_fn: `(inputs_t [batch, ...], prev_states) -> (output_t, new_states)`; `states`
        is a list of tensors in the order of `initial_states`.
      inputs: `[batch, time, ...]`.
      initial_states: the states before the first step, each `[batch, ...]`.
      output_spec: shape `[batch, ...]` and dtype of one step's output.
      mask: `[batch, time]` bool; `False` marks a step to skip.
      go_backwards: process the sequence from the last step to the first; the returned
        sequence is in processing order (reversed), as Keras does.
      unroll: a Python loop over a static time axis instead of `tf.while_loop`.
      zero_output_for_mask: zeros instead of the previous output at masked steps of the
        returned sequence.
      return_sequences: also collect the output of every step.
      dense_outputs: collect the outputs in a dense `[time, batch, ...]` tensor instead of
        a `TensorArray` (what the TFLite converter maps to builtin ops with a dynamic batch;
        differentiating it would save the whole tensor per step, so it is for inference).
      initial_output: what a masked step repeats before the first unmasked one (zeros by
        default); streaming a sequence in pieces passes the last output of the previous one.

    Returns:
      A `LoopResult`.
    """
    inputs_tm = time_major(inputs)
    mask_tm = None if mask is None else tf.transpose(mask)
    if go_backwards:
        inputs_tm = tf.reverse(inputs_tm, [0])
        mask_tm = None if mask_tm is None else tf.reverse(mask_tm, [0])
    states = list(initial_states)
    if output_spec.shape.is_fully_defined():
        # A static shape stays static in the graph (TFLite's builtins need that).
        zero_output = tf.zeros(output_spec.shape, output_spec.dtype)
    else:
        zero_output = tf.zeros(
            tf.concat([tf.shape(inputs)[:1], output_spec.shape[1:].as_list()], 0),
            output_spec.dtype,
        )
        zero_output.set_shape(output_spec.shape)
    first_output = zero_output if initial_output is None else initial_output

    def masked_step(t, x_t, prev_output, states):
        output, new_states = _checked_step(step_fn, x_t, states, output_spec)
        if mask_tm is None:
            return output, output, new_states
        mask_t = tf.gather(mask_tm, t)
        new_states = [where_unmasked(mask_t, new, old) for new, old in zip(new_states, states)]
        carried_output = where_unmasked(mask_t, output, prev_output)
        sequence_output = carried_output
        if zero_output_for_mask:
            sequence_output = where_unmasked(mask_t, output, zero_output)
        return carried_output, sequence_output, new_states

    if unroll:
        timesteps = inputs.shape[1]
        if timesteps is None:
            raise ValueError(
                "unroll=True needs a static number of timesteps, got inputs of shape "
                f"{inputs.shape}; use unroll=False for a variable number of timesteps"
            )
        prev_output = first_output
        sequence = []
        for t, x_t in enumerate(tf.unstack(inputs_tm, num=timesteps)):
            prev_output, sequence_output, states = masked_step(t, x_t, prev_output, states)
            if return_sequences:
                sequence.append(sequence_output)
        outputs = time_major(tf.stack(sequence)) if return_sequences else None
        return LoopResult(prev_output, outputs, states)

    timesteps = inputs.shape[1]
    if timesteps is None:
        timesteps = tf.shape(inputs)[1]
    if dense_outputs:
        shape = tf.concat([[timesteps], tf.shape(zero_output)], 0) if return_sequences else [0]
        collected = tf.zeros(shape, output_spec.dtype)
    else:
        collected = tf.TensorArray(
            output_spec.dtype,
            size=timesteps if return_sequences else 0,
            element_shape=output_spec.shape,
        )

    def body(t, prev_output, collected, *states):
        carried_output, sequence_output, new_states = masked_step(
            t, tf.gather(inputs_tm, t), prev_output, list(states)
        )
        if return_sequences and dense_outputs:
            collected = tf.tensor_scatter_nd_update(
                collected, tf.reshape(t, [1, 1]), sequence_output[None]
            )
        elif return_sequences:
            collected = collected.write(t, sequence_output)
        return [t + 1, carried_output, collected] + new_states

    results = tf.while_loop(
        lambda t, *_: t < timesteps,
        body,
        [tf.constant(0), first_output, collected] + states,
        maximum_iterations=timesteps,
    )
    last_output, collected, final_states = results[1], results[2], list(results[3:])
    outputs = None
    if return_sequences:
        outputs = time_major(collected if dense_outputs else collected.stack())
    return LoopResult(last_output, outputs, final_states)
