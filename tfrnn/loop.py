"""`rnn_loop`: the time loop, as a free function over any step callable.

It creates no variables and has no Python side effects, so it traces the same eagerly, in a
`tf.function` and under XLA. The sequence is processed time-major inside the loop; the
while-loop path uses `maximum_iterations` and fixed-size `TensorArray`s (what XLA needs to
compile the loop and its gradient), the unrolled path a Python loop over a static time axis.

Inputs and outputs may be nests (tuples, namedtuples, dicts, lists) of tensors: each step
gets the inputs' nest for its timestep and returns the outputs' nest; the loop works on the
flat lists.

Masking follows Keras exactly: on a masked step every state carries over unchanged and the
output repeats the previous output (zeros before the first unmasked step); with
`zero_output_for_mask=True` the masked entries of the returned *sequence* are zeros instead.
The last output is always the last unmasked output (Keras' docs; tf-keras also zeroes it,
keras#17596, which tfrnn does not copy).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import tensorflow as tf

from tfrnn._core.time_axis import time_major, where_unmasked

StepFn = Callable[[Any, list], tuple[Any, list]]


class LoopResult(NamedTuple):
    """What `rnn_loop` returns (batch-major, outputs in the nest of `output_spec`)."""

    last_output: Any
    """`[batch, *output_shape]`: the output of the last unmasked step."""
    outputs: Optional[Any]
    """`[batch, time, *output_shape]` in processing order, or `None` unless requested."""
    final_states: list
    """The states after the last step, in the order of `initial_states`."""


def _checked(values: list, specs: Sequence, what: str, expected: Callable[[Any], str]) -> list:
    """`values` as tensors of the loop's fixed shapes and dtypes (`specs`), or a ValueError.

    `expected(spec)` says where a spec comes from, for the message.
    """
    checked = []
    for index, (value, spec) in enumerate(zip(values, specs)):
        value = tf.convert_to_tensor(value)
        if not value.shape.is_compatible_with(spec.shape) or value.dtype != spec.dtype:
            name = what if what == "output" and len(specs) == 1 else f"{what} {index}"
            raise ValueError(
                f"the cell's {name} has shape {value.shape} and dtype {value.dtype.name}, but "
                f"{expected(spec)}"
            )
        value.set_shape(spec.shape)
        checked.append(value)
    return checked


class _MaskedStep:
    """One step of the loop: the cell's step, checked, then Keras' masking rules."""

    def __init__(self, step_fn, input_structure, output_spec, mask_tm, zero_output_for_mask, zeros):
        self.step_fn = step_fn
        self.input_structure = input_structure
        self.output_spec = output_spec
        self.output_specs = tf.nest.flatten(output_spec)
        self.mask_tm = mask_tm
        self.zero_output_for_mask = zero_output_for_mask
        self.zeros = zeros

    def __call__(self, t, flat_x_t, prev_outputs, states):
        """`(carried outputs, sequence outputs, new states)`, flat lists."""
        x_t = tf.nest.pack_sequence_as(self.input_structure, flat_x_t)
        output, new_states = self.step_fn(x_t, list(states))
        flat_output = tf.nest.flatten(output)
        if len(flat_output) != len(self.output_specs):
            raise ValueError(
                f"the cell returned {len(flat_output)} outputs, but its output_size gives "
                f"{len(self.output_specs)} ({self.output_spec})"
            )
        outputs = _checked(
            flat_output, self.output_specs, "output",
            lambda spec: f"its output_size says {spec.shape} of {spec.dtype.name}",
        )  # fmt: skip
        new_states = tf.nest.flatten(new_states)
        if len(new_states) != len(states):
            raise ValueError(
                f"the cell returned {len(new_states)} new states for {len(states)} states; "
                "a cell must return one new state per state in its state_size"
            )
        state_specs = [tf.TensorSpec(s.shape, s.dtype) for s in states]
        new_states = _checked(
            new_states, state_specs, "new state",
            lambda spec: f"the state has shape {spec.shape} and dtype {spec.dtype.name} (from the "
            "cell's state_size)",
        )  # fmt: skip
        if self.mask_tm is None:
            return outputs, outputs, new_states
        mask_t = tf.gather(self.mask_tm, t)
        new_states = [where_unmasked(mask_t, new, old) for new, old in zip(new_states, states)]
        carried = [where_unmasked(mask_t, o, prev) for o, prev in zip(outputs, prev_outputs)]
        sequence = carried
        if self.zero_output_for_mask:
            sequence = [where_unmasked(mask_t, o, zero) for o, zero in zip(outputs, self.zeros)]
        return carried, sequence, new_states


def _zero_outputs(specs: Sequence[tf.TensorSpec], batch: tf.Tensor) -> list:
    zeros = []
    for spec in specs:
        if spec.shape.is_fully_defined():
            # A static shape stays static in the graph (TFLite's builtins need that).
            zeros.append(tf.zeros(spec.shape, spec.dtype))
            continue
        zero = tf.zeros(tf.concat([[batch], spec.shape[1:].as_list()], 0), spec.dtype)
        zero.set_shape(spec.shape)
        zeros.append(zero)
    return zeros


def _unrolled(step, flat_inputs_tm, timesteps, first_outputs, states, return_sequences):
    """The loop unrolled over a static time axis: `(last outputs, sequences, final states)`."""
    if timesteps is None:
        raise ValueError(
            "unroll=True needs a static number of timesteps, got inputs of shape "
            f"{time_major(flat_inputs_tm[0]).shape}; use unroll=False for a variable number of timesteps"
        )
    unstacked = [tf.unstack(x, num=timesteps) for x in flat_inputs_tm]
    prev_outputs, sequences = first_outputs, []
    for t in range(timesteps):
        prev_outputs, sequence_outputs, states = step(t, [x[t] for x in unstacked], prev_outputs, states)
        sequences.append(sequence_outputs)
    if not return_sequences:
        return prev_outputs, None, states
    stacked = [time_major(tf.stack([s[i] for s in sequences])) for i in range(len(prev_outputs))]
    return prev_outputs, stacked, states


def _collectors(specs, zeros, timesteps, return_sequences, dense_outputs) -> list:
    """Where the while loop writes each output's sequence."""
    collected = []
    for spec, zero in zip(specs, zeros):
        if dense_outputs:
            shape = tf.concat([[timesteps], tf.shape(zero)], 0) if return_sequences else [0]
            collected.append(tf.zeros(shape, spec.dtype))
        else:
            size = timesteps if return_sequences else 0
            collected.append(tf.TensorArray(spec.dtype, size=size, element_shape=spec.shape))
    return collected


def _while(step, flat_inputs_tm, timesteps, first_outputs, states, specs, zeros, return_sequences, dense_outputs):
    """The `tf.while_loop`: `(last outputs, sequences, final states)`."""
    if timesteps is None:
        timesteps = tf.shape(flat_inputs_tm[0])[0]
    collected = _collectors(specs, zeros, timesteps, return_sequences, dense_outputs)
    count = len(specs)

    def body(t, prev_outputs, collected, states):
        x_t = [tf.gather(x, t) for x in flat_inputs_tm]
        carried, sequence_outputs, new_states = step(t, x_t, list(prev_outputs), list(states))
        if return_sequences and dense_outputs:
            collected = [
                tf.tensor_scatter_nd_update(c, tf.reshape(t, [1, 1]), o[None])
                for c, o in zip(collected, sequence_outputs)
            ]
        elif return_sequences:
            collected = [c.write(t, o) for c, o in zip(collected, sequence_outputs)]
        return t + 1, carried, list(collected), new_states

    _, last_outputs, collected, final_states = tf.while_loop(
        lambda t, *_: t < timesteps,
        body,
        (tf.constant(0), list(first_outputs), collected, list(states)),
        maximum_iterations=timesteps,
    )
    sequences = None
    if return_sequences:
        sequences = [time_major(c if dense_outputs else c.stack()) for c in collected[:count]]
    return list(last_outputs), sequences, list(final_states)


def rnn_loop(
    step_fn: StepFn,
    inputs: Any,
    initial_states: Sequence[tf.Tensor],
    *,
    output_spec: Any,
    mask: Optional[tf.Tensor] = None,
    go_backwards: bool = False,
    unroll: bool = False,
    zero_output_for_mask: bool = False,
    return_sequences: bool = False,
    dense_outputs: bool = False,
    initial_output: Optional[Any] = None,
) -> LoopResult:
    """Runs `step_fn` over the time axis of `inputs`.

    >>> step = lambda x_t, states: (x_t + states[0], [x_t + states[0]])
    >>> result = tfrnn.rnn_loop(step, tf.ones([2, 3, 1]), [tf.zeros([2, 1])],
    ...                         output_spec=tf.TensorSpec([2, 1]), return_sequences=True)
    >>> result.outputs[0, :, 0].numpy().tolist()
    [1.0, 2.0, 3.0]

    Args:
      step_fn: `(inputs_t, prev_states) -> (output_t, new_states)`; `inputs_t` is the inputs'
        nest at one timestep (`[batch, ...]` each), `states` a list of tensors in the order of
        `initial_states`, `output_t` a nest like `output_spec`.
      inputs: `[batch, time, ...]`, or a nest of such tensors (one batch and time).
      initial_states: the states before the first step, each `[batch, ...]`.
      output_spec: shape `[batch, ...]` and dtype of one step's output (a nest for nested
        outputs).
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
    flat_inputs_tm = [time_major(x) for x in tf.nest.flatten(inputs)]
    mask_tm = None if mask is None else tf.transpose(mask)
    if go_backwards:
        flat_inputs_tm = [tf.reverse(x, [0]) for x in flat_inputs_tm]
        mask_tm = None if mask_tm is None else tf.reverse(mask_tm, [0])
    specs = tf.nest.flatten(output_spec)
    zeros = _zero_outputs(specs, tf.shape(flat_inputs_tm[0])[1])
    first_outputs = zeros if initial_output is None else tf.nest.flatten(initial_output)
    step = _MaskedStep(step_fn, inputs, output_spec, mask_tm, zero_output_for_mask, zeros)
    timesteps = flat_inputs_tm[0].shape[0]
    if unroll:
        last, sequences, states = _unrolled(
            step, flat_inputs_tm, timesteps, first_outputs, list(initial_states), return_sequences
        )
    else:
        last, sequences, states = _while(
            step, flat_inputs_tm, timesteps, first_outputs, list(initial_states), specs, zeros,
            return_sequences, dense_outputs,
        )  # fmt: skip
    last_output = tf.nest.pack_sequence_as(output_spec, last)
    outputs = None if sequences is None else tf.nest.pack_sequence_as(output_spec, sequences)
    return LoopResult(last_output, outputs, states)
