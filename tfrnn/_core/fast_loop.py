"""The fast loop: a built-in cell's time loop with a hand-written backward pass.

A built-in cell's step is a few matmuls followed by elementwise gate math (`FastLoopSpec`):

    pre_g = sum_k source_k @ kernel_gk + bias_g     (source_k: the step's inputs x_t, or h)
    output, new_states = elementwise(pres, prev_states)

Differentiating the generic `tf.while_loop` (`tfrnn.loop`) makes TensorFlow save every
intermediate of every step and run the matmul gradients one step at a time. The fast loop's
forward pass saves per step only the previous states and either the cell's gate activations
(`FastLoopSpec.saved`) or the pre-activations. Its backward loop runs from the last step to
the first and does only what is truly sequential:

    d_pres_t, d_prev_states = the VJP of elementwise at step t   (the cell's, or a GradientTape)
    d_h_{t-1} += sum_g d_pre_g,t @ recurrent_kernel_g^T

Everything else is one matmul per projection over all timesteps at once, with X the inputs
and H the saved previous h, both `[time * batch, ...]`:
`d_kernel = concat([X, H])^T @ d_pre`, `d_bias = sum(d_pre)`, `d_inputs = d_pre @
input_kernel^T` (natively the weights' products one per source, the bias's `ones @ d_pre`,
run one after another: `_weight_gradients`). Masking follows Keras' rules (`tfrnn.loop`); its
gradient is written out in `_mask_gradients`. Without a gradient tape XLA drops the saves
(dead loop state), so inference pays nothing for them. Under XLA a batch of 16 rows or more
with narrow steps runs as two independent half-batch chains in one loop (`_chains`), so that
one chain's gate math overlaps the other's matmul on a second core. Without XLA around it
(`compiled_steps`, bfloat16 on a CPU) the loop runs every matmul on TensorFlow's native
kernels and each step's gate math, and its VJP, as a small XLA-compiled function (`_Steps`).
Called from a graph that XLA does not compile, where a gradient may be taken
(`split_backward`), the forward and backward passes are two XLA-compiled functions and
`d_inputs` a native op after the second, which TensorFlow drops when the caller never reads
it. What was measured for each of these choices, and what was tried and dropped:
docs/performance.md, "The fast loop: what was measured, kept and dropped".
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple, Optional, Sequence, Union

import tensorflow as tf

from tfrnn._core.builtin_cell import (
    INPUTS,
    STATE,
    FastLoopSpec,
    Projection,
    dense,
    in_xla_context,
)
from tfrnn._core.time_axis import time_major, where_unmasked

# Under XLA, a static batch of at least CHAINS_MIN_BATCH rows whose pre-activations are at
# most CHAINS_MAX_SIZE elements per step runs as two chains; larger steps' matmuls already use
# both cores.
CHAINS_MIN_BATCH = 16
CHAINS_MAX_SIZE = 32 * 1024

Timesteps = Union[int, tf.Tensor]
MaskReader = Callable[[tf.Tensor], Optional[tf.Tensor]]


class Chain(NamedTuple):
    """The rows of the batch that one independent chain of the loop computes."""

    start: int
    size: Optional[int]
    """`None`: the whole batch (one chain)."""

    def rows(self, tensor: Optional[tf.Tensor], axis: int = 0) -> Optional[tf.Tensor]:
        """The chain's rows of `tensor` along its batch `axis`."""
        if tensor is None or self.size is None:
            return tensor
        index = [slice(None)] * axis + [slice(self.start, self.start + self.size)]
        return tensor[tuple(index)]


def _chains(batch: Optional[int], width: int, under_xla: Optional[bool] = None) -> list[Chain]:
    """The chains over a static `batch` whose steps' pre-activations are `width` wide, for a
    loop that XLA compiles or not (`under_xla`; `None`: the graph being traced says)."""
    if under_xla is None:
        under_xla = in_xla_context()
    if batch is None or batch < CHAINS_MIN_BATCH or batch * width > CHAINS_MAX_SIZE or not under_xla:
        return [Chain(0, None)]
    half = (batch + 1) // 2
    return [Chain(0, half), Chain(half, batch - half)]


class Weights(NamedTuple):
    """One projection's weights as tensors, by source."""

    sources: tuple[str, ...]
    """The sources of the projection's terms in order: the order of its kernel gradients."""
    inputs: Optional[tf.Tensor]
    """`[features, width]`, or `None`."""
    state: Optional[tf.Tensor]
    """`[units, width]`, the kernel of h, or `None`."""
    bias: Optional[tf.Tensor]

    @property
    def width(self) -> int:
        return (self.inputs if self.inputs is not None else self.state).shape[-1]

    def project(self, x_t: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
        """The step's pre-activation `[batch, width]`."""
        if self.inputs is not None and self.state is not None:
            pre = tf.matmul(x_t, self.inputs) + tf.matmul(h, self.state)
        elif self.inputs is not None:
            pre = tf.matmul(x_t, self.inputs)
        else:
            pre = tf.matmul(h, self.state)
        return pre if self.bias is None else pre + self.bias

    def project_inputs(self, xs: tf.Tensor) -> Optional[tf.Tensor]:
        """`xs @ inputs` for all steps at once, `[time, batch, width]` (no bias); `None`
        without an inputs term."""
        return None if self.inputs is None else dense(xs, self.inputs)


def _weights(projections: Sequence[Projection], flat: Sequence[tf.Tensor]) -> list[Weights]:
    """Each projection's `Weights` from `flat`: every term's kernel in order, then the biases."""
    num_kernels = sum(len(p.terms) for p in projections)
    kernels, biases = iter(flat[:num_kernels]), iter(flat[num_kernels:])
    result = []
    for projection in projections:
        by_source = {source: next(kernels) for source, _ in projection.terms}
        bias = next(biases) if projection.bias is not None else None
        sources = tuple(source for source, _ in projection.terms)
        result.append(Weights(sources, by_source.get(INPUTS), by_source.get(STATE), bias))
    return result


class Saved(NamedTuple):
    """What the forward pass keeps for the backward pass (dense tensors, time-major but the
    inputs)."""

    inputs: tf.Tensor
    """`[batch, time, features]` as given (the backward pass reorders them where it needs them:
    inside a compiled function that is free, and `split_backward` passes no copy across)."""
    timesteps: Timesteps
    chains: list[Chain]
    weights: list[Weights]
    mask: Optional[tf.Tensor]
    """`[time, batch]` bool in processing order, or `None`."""
    saves: list[list[tf.Tensor]]
    """Per chain: the `saves` of `FastLoop.step` at every step, each `[time, rows, width]`."""
    prev_states: list[list[tf.Tensor]]
    """Per chain: the states before every step, each `[time, rows, ...]`."""
    final_states: list[tf.Tensor]
    output: tf.Tensor


class _ForwardCarry(NamedTuple):
    """One chain's forward loop state."""

    output: tf.Tensor
    """The carried output (the last unmasked one), or an empty placeholder when not carried."""
    prev_states: list[tf.TensorArray]
    saves: list[tf.TensorArray]
    sequence: tf.TensorArray
    """The returned sequence (size 0 without `return_sequences`)."""
    states: list[tf.Tensor]


class _StepReads(NamedTuple):
    """One chain's tensors of one step, as the backward pass reads them."""

    d_sequence: Union[tf.Tensor, tuple]
    """The incoming gradient of the step's sequence output, or `()` without a sequence."""
    prev_states: list[tf.Tensor]
    saves: list[tf.Tensor]


class _BackwardCarry(NamedTuple):
    """One chain's backward loop state, from the last step to the first."""

    d_carried: Union[tf.Tensor, tuple]
    """The gradient of the carried output, or `()` when the output is not carried."""
    d_pres: list[tf.TensorArray]
    next: _StepReads
    """The next step's reads, read one iteration ahead (see docs/performance.md)."""
    d_states: list[tf.Tensor]


@dataclasses.dataclass(frozen=True, eq=False)
class FastLoop:
    """A built-in cell's time loop with a hand-written gradient, for one call's options.

    `loop(inputs, initial_states)` runs `forward` under a custom gradient whose gradient
    function is `backward`; see the module docstring.
    """

    spec: FastLoopSpec
    output_spec: tf.TensorSpec
    """Shape `[batch, ...]` and dtype of one step's output."""
    mask: Optional[tf.Tensor] = None
    """`[batch, time]` bool; `False` marks a step to skip."""
    go_backwards: bool = False
    zero_output_for_mask: bool = False
    return_sequences: bool = False
    differentiable: bool = True
    """`False`: run `forward` alone, keeping nothing for a backward pass, for calls of which no
    gradient can be taken (`paths.Path.NATIVE_FORWARD`: without XLA, nothing drops the saves)."""
    input_gradient: bool = True
    """`False`: the custom gradient leaves the inputs out (no tape watches them: an eager call,
    `paths.choose`), which saves the backward pass its inputs' matmul over all timesteps."""
    compiled_steps: bool = False
    """Run without XLA around the loop (TensorFlow's native kernels for every matmul), with
    the inputs projected before the loop and each step's elementwise part, and its VJP, as
    an XLA-compiled function (`paths.Path.NATIVE`): TensorFlow's own elementwise kernels
    are many times slower than XLA's code."""
    split_backward: bool = False
    """Called from a graph that XLA does not compile, run the forward loop and the backward
    pass (its recurrence and the weights' gradients) as two XLA-compiled functions, and the
    inputs' gradient outside them (`paths.Path.SPLIT`): TensorFlow then drops it where the
    caller never reads it, which a compiled backward pass, returning all its gradients,
    cannot."""

    def __post_init__(self):
        for projection in self.spec.projections:
            sources = [source for source, _ in projection.terms]
            for source in (INPUTS, STATE):
                if sources.count(source) > 1:
                    raise ValueError(f"a projection has two {source} terms; sum their kernels")

    @property
    def carry_output(self) -> bool:
        """Whether the loop carries the output: without a mask it is the output state."""
        return self.mask is not None or self.spec.output_state is None

    def __call__(
        self, inputs: tf.Tensor, initial_states: Sequence[tf.Tensor]
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """`(outputs [batch, time, ...] or last output [batch, ...], final_states)`."""
        # Weights enter the custom gradient as tensors, so their gradients are returned as such.
        projections = self.spec.projections
        flat_weights = [tf.convert_to_tensor(k) for p in projections for _, k in p.terms]
        flat_weights += [tf.convert_to_tensor(p.bias) for p in projections if p.bias is not None]
        mask = None if self.mask is None else tf.transpose(self.mask)
        if self.go_backwards and mask is not None:
            mask = tf.reverse(mask, [0])
        num_states = len(initial_states)
        if not self.differentiable:
            output, final_states, _ = self.forward(
                inputs, list(initial_states), _weights(projections, flat_weights), mask
            )
            return output, final_states

        leading = [inputs] if self.input_gradient else []

        @tf.custom_gradient
        def run(*args):
            xs, args = (args[0], args[1:]) if self.input_gradient else (inputs, args)
            states, weights = list(args[:num_states]), _weights(projections, args[num_states:])
            output, final_states, saved = self._forward_saving(xs, states, weights, mask)

            def grad(d_output, *d_final_states):
                return self.backward(saved, d_output, d_final_states)

            return (output, *final_states), grad

        results = run(*leading, *initial_states, *flat_weights)
        return results[0], list(results[1:])

    # -- a step's elementwise part, what it keeps, and its VJP from that ------------------------

    def step(self, pres: list, prev_states: list) -> tuple[tf.Tensor, list, list]:
        """A step's elementwise part: `(output, new_states, saves)`, where `saves` is what the
        step keeps besides its previous states: the saved activations, or `pres` (nothing
        when not `differentiable`)."""
        if not self.differentiable:
            output, new_states = self.spec.elementwise(pres, prev_states)
            return output, new_states, []
        if self.spec.saved_vjp is not None:
            output, new_states, saved = self.spec.elementwise_saving(pres, prev_states)
            return output, new_states, [saved]
        output, new_states = self.spec.elementwise(pres, prev_states)
        return output, new_states, pres

    def step_from_parts(self, projected: list, recurrent: list, biases: list, prev_states: list):
        """`step` from each projection's parts: projected inputs, recurrent matmul, bias (any
        may be `None`)."""
        pres = [_add(_add(p, r), b) for p, r, b in zip(projected, recurrent, biases)]
        return self.step(pres, prev_states)

    def saved_widths(self, weights: list[Weights]) -> list[int]:
        if not self.differentiable:
            return []
        if self.spec.saved_vjp is not None:
            return [self.spec.saved_width]
        return [w.width for w in weights]

    def vjp(self, saves: list, prev_states: list, d_output, d_new_states: list):
        """`(d_pres, d_prev_states)` of a step's elementwise part, from what `save` kept."""
        if self.spec.saved_vjp is not None:
            return self.spec.saved_vjp(saves[0], prev_states, d_output, d_new_states)
        if self.spec.elementwise_vjp is not None:
            return self.spec.elementwise_vjp(saves, prev_states, d_output, d_new_states)
        return _tape_vjp(self.spec.elementwise, saves, prev_states, d_output, d_new_states)

    # -- forward -------------------------------------------------------------------------------

    def forward(self, inputs, states, weights, mask) -> tuple[tf.Tensor, list, Saved]:
        """The loop over `inputs` `[batch, time, features]`: `(output, final_states, saved)`.

        `mask` is `[time, batch]` in processing order, or `None`.
        """
        xs, timesteps = self._time_major(inputs), _timesteps(inputs)
        chains = _chains(xs.shape[1], sum(w.width for w in weights))
        read_masks = _mask_readers(mask, chains, timesteps)
        steps = _Steps.of(self, xs, timesteps, weights)
        chain_states = [[chain.rows(s) for s in states] for chain in chains]
        zero_outputs = [self._zero_output(tf.shape(s[0])[:1]) for s in chain_states]
        init = [
            self._forward_init(s, zero, timesteps, self.saved_widths(weights), xs.dtype)
            for s, zero in zip(chain_states, zero_outputs)
        ]

        def body(t, carry):
            return t + 1, [
                self._forward_step(t, read(t), steps.reader(t, chain), c, zero)
                for chain, c, read, zero in zip(chains, carry, read_masks, zero_outputs)
            ]

        _, final = tf.while_loop(
            lambda t, _: t < timesteps, body, (tf.constant(0), init), maximum_iterations=timesteps
        )
        final_states = [_join([c.states[i] for c in final]) for i in range(len(states))]
        if self.return_sequences:
            output = time_major(_join([c.sequence.stack() for c in final], axis=1))
        elif self.carry_output:
            output = _join([c.output for c in final])
        else:
            output = final_states[self.spec.output_state]
        saves = [[ta.stack() for ta in c.saves] for c in final]
        prev_states = [[ta.stack() for ta in c.prev_states] for c in final]
        return output, final_states, Saved(
            inputs, timesteps, chains, weights, mask, saves, prev_states, final_states, output
        )

    def _time_major(self, inputs: tf.Tensor) -> tf.Tensor:
        """`inputs` `[batch, time, features]` as `[time, batch, features]` in processing order."""
        xs = time_major(inputs)
        return tf.reverse(xs, [0]) if self.go_backwards else xs

    def _forward_saving(self, inputs, states, weights, mask) -> tuple[tf.Tensor, list, Saved]:
        """`forward`, as one XLA-compiled function with `split_backward`."""
        if not self.split_backward:
            return self.forward(inputs, states, weights, mask)

        def loop(inputs, states, weights, mask):
            output, final_states, saved = self.forward(inputs, states, weights, mask)
            return output, final_states, saved.saves, saved.prev_states

        output, final_states, saves, prev_states = _compiled(loop)(inputs, states, weights, mask)
        chains = _chains(inputs.shape[0], sum(w.width for w in weights), under_xla=True)
        saved = Saved(
            inputs, _timesteps(inputs), chains, weights, mask, saves, prev_states, final_states, output
        )
        return output, final_states, saved

    def _zero_output(self, rows: tf.Tensor) -> tf.Tensor:
        shape = tf.concat([rows, self.output_spec.shape[1:]], 0)
        return tf.zeros(shape, self.output_spec.dtype)

    def _forward_init(self, states, zero_output, timesteps, saved_widths, dtype) -> _ForwardCarry:
        rows = states[0].shape[:1]
        return _ForwardCarry(
            output=zero_output if self.carry_output else tf.zeros([0]),
            sequence=_ta(
                self.output_spec.dtype,
                timesteps if self.return_sequences else 0,
                zero_output.shape,
            ),
            saves=[_ta(dtype, timesteps, rows.concatenate([width])) for width in saved_widths],
            prev_states=[_ta(s.dtype, timesteps, s.shape) for s in states if self.differentiable],
            states=states,
        )

    def _forward_step(self, t, mask_t, step, carry: _ForwardCarry, zero_output):
        prev_states = list(carry.states)
        output, new_states, saves = step(prev_states)
        new_states = [where_unmasked(mask_t, n, o) for n, o in zip(new_states, prev_states)]
        carried = carry.output
        if self.carry_output:
            carried = where_unmasked(mask_t, output, carry.output)
        sequence = carry.sequence
        if self.return_sequences:
            sequence_output = carried if self.carry_output else output
            if self.zero_output_for_mask:
                sequence_output = where_unmasked(mask_t, output, zero_output)
            sequence = sequence.write(t, sequence_output)
        return _ForwardCarry(
            output=carried,
            sequence=sequence,
            saves=[ta.write(t, s) for ta, s in zip(carry.saves, saves)],
            prev_states=[ta.write(t, s) for ta, s in zip(carry.prev_states, prev_states)],
            states=new_states,
        )

    # -- backward ------------------------------------------------------------------------------

    def backward(self, saved: Saved, d_output, d_final_states) -> list[tf.Tensor]:
        """The gradients of the custom gradient's inputs: inputs, initial states, weights."""
        if self.split_backward:
            # The inputs' gradient stays outside the compiled function, where TensorFlow
            # drops it when nothing reads it.
            recurrence_and_weights = _compiled(self._recurrence_and_weights)
        else:
            recurrence_and_weights = self._recurrence_and_weights
        d_pres, d_initial, d_kernels, d_biases = recurrence_and_weights(
            saved, d_output, list(d_final_states)
        )
        if not self.input_gradient:
            return d_initial + d_kernels + d_biases
        d_x = _join([_inputs_gradient(saved.weights, d) for d in d_pres], axis=1)
        if self.go_backwards:
            d_x = tf.reverse(d_x, [0])
        return [time_major(d_x)] + d_initial + d_kernels + d_biases

    def _recurrence_and_weights(self, saved: Saved, d_output, d_final_states):
        """`(d_pres, d_initial_states, d_kernels, d_biases)`: `backward_recurrence` (`d_pres`
        per chain: an output joined over the chains would be one more copy), and the weights'
        gradients over all timesteps from its `d_pres`."""
        by_chain, d_initial = self.backward_recurrence(saved, d_output, d_final_states)
        d_pres = [_join(list(parts), axis=1) for parts in zip(*by_chain)]
        prev_h = _join([states[0] for states in saved.prev_states], axis=1)
        d_kernels, d_biases = _weight_gradients(
            saved.weights, d_pres, self._time_major(saved.inputs), prev_h, under_xla=in_xla_context()
        )
        return by_chain, d_initial, d_kernels, d_biases

    def backward_recurrence(self, saved: Saved, d_output, d_final_states) -> tuple[list, list]:
        """The backward loop, from the last step to the first: `(d_pres, d_initial_states)`,
        `d_pres` per chain and projection `[time, rows, width]` in processing order.

        TensorArrays must not cross from the forward into the backward function (XLA cannot
        pass TensorLists between functions): they are rebuilt here from `saved`'s tensors.
        """
        read_masks = _mask_readers(saved.mask, saved.chains, saved.timesteps)
        d_states = [
            tf.zeros_like(s) if d is None else d for s, d in zip(saved.final_states, d_final_states)
        ]
        d_output = tf.zeros_like(saved.output) if d_output is None else d_output
        d_sequence = time_major(d_output) if self.return_sequences else None
        if not self.return_sequences and not self.carry_output:
            # The last output is the state `output_state`: its gradient joins that state's.
            index = self.spec.output_state
            d_states[index] = d_states[index] + d_output
        state_kernels_t = [
            (index, tf.transpose(w.state)) for index, w in enumerate(saved.weights)
            if w.state is not None
        ]  # fmt: skip
        steps = _StepReader.for_chains(saved, d_sequence)
        init = [self._backward_init(saved, reader, d_states, d_output) for reader in steps]
        vjp = _compiled_in_float32(self.vjp, saved.inputs.dtype) if self.compiled_steps else self.vjp

        def body(s, carry):
            t = saved.timesteps - 1 - s
            return s + 1, [
                self._backward_step(t, read(t), c, reader, state_kernels_t, vjp)
                for c, read, reader in zip(carry, read_masks, steps)
            ]

        _, final = tf.while_loop(
            lambda s, _: s < saved.timesteps,
            body,
            (tf.constant(0), init),
            maximum_iterations=saved.timesteps,
        )
        d_initial = [_join([c.d_states[i] for c in final]) for i in range(len(d_states))]
        return [[ta.stack() for ta in c.d_pres] for c in final], d_initial

    def _backward_init(self, saved: Saved, reader, d_states, d_output) -> _BackwardCarry:
        chain, prev_h = reader.chain, reader.stacked.prev_states[0]
        rows = prev_h.shape[1:2]
        d_pres = [
            _ta(saved.inputs.dtype, saved.timesteps, rows.concatenate([w.width]))
            for w in saved.weights
        ]
        d_carried = ()
        if self.carry_output and self.return_sequences:
            # The sequence's gradient arrives step by step; the last output is not returned.
            d_carried = self._zero_output(tf.shape(prev_h)[1:2])
        elif self.carry_output:
            d_carried = chain.rows(d_output)
        d_states = [chain.rows(d) for d in d_states]
        return _BackwardCarry(d_carried, d_pres, reader.first(saved.timesteps), d_states)

    def _backward_step(self, t, mask_t, carry: _BackwardCarry, reader, state_kernels_t, vjp):
        now = carry.next
        d_out, d_carried, d_new, d_kept = _mask_gradients(
            mask_t,
            carry.d_carried if self.carry_output else None,
            now.d_sequence if self.return_sequences else None,
            list(carry.d_states),
            self.zero_output_for_mask,
        )
        d_pres, d_prev = vjp(now.saves, now.prev_states, d_out, d_new)
        d_prev = [_add(a, b) for a, b in zip(d_prev, d_kept)]
        for index, kernel_t in state_kernels_t:
            d_prev[0] = _add(d_prev[0], tf.matmul(d_pres[index], kernel_t))
        d_prev = [tf.zeros_like(p) if d is None else d for p, d in zip(now.prev_states, d_prev)]
        written = [ta.write(t, d) for ta, d in zip(carry.d_pres, d_pres)]
        next_reads = reader.read(tf.maximum(t - 1, 0))
        if self.carry_output and d_carried is None:
            d_carried = tf.zeros_like(carry.d_carried)
        return _BackwardCarry(() if d_carried is None else d_carried, written, next_reads, d_prev)


class _Steps(NamedTuple):
    """How the forward loop computes a step: `reader(t, chain)(prev_states)` gives the step's
    `(output, new_states, saves)` (`FastLoop.step`).

    Under XLA (and without `compiled_steps`) a step reads `x_t` and runs every projection's
    matmuls and the elementwise part in the loop. With `compiled_steps` the input projections
    of all steps are one native matmul before the loop (a native slice per step is cheap,
    XLA's is not: docs/performance.md); a step runs its recurrent matmuls natively and the
    rest, from the sums of the projections on, in one XLA-compiled function.
    """

    loop: "FastLoop"
    weights: list[Weights]
    xs: Optional[Stepwise]
    projected: list[Optional[Stepwise]]
    """With `compiled_steps`: per projection, its input projections step by step, or `None`."""
    compiled: Optional[Callable]

    @classmethod
    def of(cls, loop: "FastLoop", xs: tf.Tensor, timesteps: Timesteps, weights: list[Weights]):
        if not loop.compiled_steps:
            return cls(loop, weights, _unstacked([xs], timesteps)[0], [], None)
        projected = []
        for w in weights:
            stacked = w.project_inputs(xs)
            projected.append(None if stacked is None else _unstacked([stacked], timesteps)[0])
        return cls(loop, weights, None, projected, _compiled_in_float32(loop.step_from_parts, xs.dtype))

    def reader(self, t, chain: Chain) -> Callable[[list], tuple]:
        if self.compiled is None:
            x_t = chain.rows(self.xs.read(t))
            return lambda prev_states: self.loop.step(
                [w.project(x_t, prev_states[0]) for w in self.weights], prev_states
            )
        projected = [None if ta is None else chain.rows(ta.read(t)) for ta in self.projected]
        # The biases join in the compiled step, in float32 there, rather than as one more
        # native pass over the projected inputs (docs/performance.md).
        biases = [w.bias for w in self.weights]

        def step(prev_states):
            h = prev_states[0]
            recurrent = [None if w.state is None else tf.matmul(h, w.state) for w in self.weights]
            return self.compiled(projected, recurrent, biases, prev_states)

        return step


def _compiled(fn: Callable) -> Callable:
    """`fn` as an XLA-compiled function, called from a graph that XLA does not compile."""
    return tf.function(fn, jit_compile=True, autograph=False)


def _compiled_in_float32(fn: Callable, dtype: tf.DType) -> Callable:
    """`_compiled(fn)` computing in float32 from tensors of a narrower `dtype`, its float32
    results cast back: a step of the native loop (`compiled_steps`).

    XLA:CPU's bfloat16 elementwise code converts to float32 and back around every op; cast
    once, the step is faster (docs/performance.md) and its gate math rounds once, not per op.
    """
    if dtype not in (tf.bfloat16, tf.float16):
        return _compiled(fn)

    def cast(tensors, source, target):
        return tf.nest.map_structure(
            lambda t: tf.cast(t, target) if isinstance(t, tf.Tensor) and t.dtype == source else t,
            tensors,
        )

    return _compiled(lambda *args: cast(fn(*cast(args, dtype, tf.float32)), tf.float32, dtype))


class _StepReader(NamedTuple):
    """The backward pass's reads of one chain's saved tensors, step by step."""

    chain: Chain
    saves: list[Stepwise]
    prev_states: list[Stepwise]
    d_sequence: Optional[Stepwise]
    """The whole batch's sequence gradient, or `None` without a returned sequence."""
    stacked: _StepReads
    """The `[time, ...]` tensors read (`d_sequence` the whole batch's)."""

    @classmethod
    def for_chains(cls, saved: Saved, d_sequence: Optional[tf.Tensor]) -> list["_StepReader"]:
        """One reader per chain of `saved`; `d_sequence` is `[time, batch, ...]` or `None`."""
        saves = [_unstacked(s, saved.timesteps) for s in saved.saves]
        prev_states = [_unstacked(s, saved.timesteps) for s in saved.prev_states]
        d_sequence_ta = None
        if d_sequence is not None:
            d_sequence_ta = _unstacked([d_sequence], saved.timesteps)[0]
        readers = []
        for g, chain in enumerate(saved.chains):
            d_seq = () if d_sequence is None else d_sequence
            stacked = _StepReads(d_seq, saved.prev_states[g], saved.saves[g])
            readers.append(cls(chain, saves[g], prev_states[g], d_sequence_ta, stacked))
        return readers

    def read(self, t) -> _StepReads:
        return _StepReads(
            saves=[ta.read(t) for ta in self.saves],
            prev_states=[ta.read(t) for ta in self.prev_states],
            d_sequence=() if self.d_sequence is None else self.chain.rows(self.d_sequence.read(t)),
        )

    def first(self, timesteps: Timesteps) -> _StepReads:
        """The last step's reads (zeros for no steps: the loop does not run)."""

        def zeros():
            stacked = self.stacked
            if self.d_sequence is not None:
                stacked = stacked._replace(d_sequence=self.chain.rows(stacked.d_sequence, axis=1))
            return tf.nest.map_structure(lambda x: tf.zeros(tf.shape(x)[1:], x.dtype), stacked)

        if isinstance(timesteps, int):
            return self.read(timesteps - 1) if timesteps > 0 else zeros()
        return tf.cond(timesteps > 0, lambda: self.read(tf.maximum(timesteps - 1, 0)), zeros)


def run_fast_loop(
    spec: FastLoopSpec, inputs: tf.Tensor, initial_states: Sequence[tf.Tensor], **options
) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """Runs a built-in cell over `inputs` `[batch, time, features]` (see `FastLoop`).

    `options` are `FastLoop`'s: `output_spec`, `mask`, `go_backwards`,
    `zero_output_for_mask`, `return_sequences`. Same contract as `tfrnn.loop.rnn_loop`, with
    the output already picked: returns `(outputs [batch, time, ...] or last_output
    [batch, ...], final_states)`, differentiable with respect to `inputs`, `initial_states`
    and every kernel and bias in `spec`.
    """
    return FastLoop(spec, **options)(inputs, initial_states)


# -- helpers ---------------------------------------------------------------------------------


def _add(a: Optional[tf.Tensor], b: Optional[tf.Tensor]) -> Optional[tf.Tensor]:
    """`a + b` where `None` stands for zeros."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _ta(dtype, size, shape) -> tf.TensorArray:
    return tf.TensorArray(dtype, size=size, element_shape=shape)


class _Slices(NamedTuple):
    """A `[time, ...]` tensor read step by step where it is: natively, step `t` is a view."""

    stacked: tf.Tensor

    def read(self, t) -> tf.Tensor:
        return self.stacked[t]


Stepwise = Union[tf.TensorArray, _Slices]
"""A `[time, ...]` tensor that `.read(t)` reads step by step (`_unstacked`)."""


def _unstacked(stacked: list[tf.Tensor], timesteps) -> list[Stepwise]:
    """The `[time, ...]` tensors `stacked`, each readable step by step (`.read(t)`).

    Under XLA, `TensorArray`s (read one step ahead where it matters: docs/performance.md);
    without XLA, the tensors themselves: a `TensorArray` would copy each whole tensor once
    more before the loop.
    """
    if not in_xla_context():
        return [_Slices(s) for s in stacked]
    return [_ta(s.dtype, timesteps, s.shape[1:]).unstack(s) for s in stacked]


def _timesteps(inputs: tf.Tensor) -> Timesteps:
    """The number of steps of `inputs` `[batch, time, ...]`: static where known."""
    return tf.shape(inputs)[1] if inputs.shape[1] is None else inputs.shape[1]


def _join(parts: list, axis: int = 0):
    return parts[0] if len(parts) == 1 else tf.concat(parts, axis)


def _mask_readers(mask: Optional[tf.Tensor], chains, timesteps) -> list[MaskReader]:
    """Per chain: `t -> [rows]` bool, step `t` of `mask` `[time, batch]` (`None`: unmasked)."""
    if mask is None:
        return [lambda t: None] * len(chains)
    readers = []
    for chain in chains:
        rows = chain.rows(mask, axis=1)
        readers.append(_unstacked([rows], timesteps)[0].read)
    return readers


def _mask_gradients(mask_t, d_carried, d_seq, d_states, zero_output_for_mask):
    """Splits incoming gradients at a (possibly) masked step.

    Forward: `carried = where(m, out, prev)`, `seq = where(m, out, 0 or prev)`,
    `states = where(m, new, prev_states)`. Returns `(d_out, d_prev_carried, d_new_states,
    d_kept_states)`: what flows into the cell's step and what skips it (`None`: zeros).
    """
    if mask_t is None:
        return _add(d_carried, d_seq), None, list(d_states), [None] * len(d_states)
    zeros = tf.zeros_like(d_carried)
    total = _add(d_carried, d_seq)
    skipped = d_carried if (d_seq is None or zero_output_for_mask) else total
    d_out = where_unmasked(mask_t, total, zeros)
    d_prev_carried = where_unmasked(mask_t, zeros, skipped)
    d_new = [where_unmasked(mask_t, d, tf.zeros_like(d)) for d in d_states]
    d_kept = [where_unmasked(mask_t, tf.zeros_like(d), d) for d in d_states]
    return d_out, d_prev_carried, d_new, d_kept


def _tape_vjp(elementwise, pres, prev_states, d_out, d_new):
    with tf.GradientTape() as tape:
        tape.watch(pres + prev_states)
        output, new_states = elementwise(pres, prev_states)
    d_out = tf.zeros_like(output) if d_out is None else d_out
    grads = tape.gradient(
        [output] + list(new_states),
        pres + prev_states,
        output_gradients=[d_out] + list(d_new),
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    return grads[: len(pres)], grads[len(pres) :]


def _weight_gradients(weights: list[Weights], d_pres, xs, prev_h, under_xla: bool):
    """The kernels' and biases' gradients over all timesteps.

    Under XLA: one matmul per projection over the concatenation of its sources (natively the
    copy would be one more large buffer). Natively: one matmul per projection and source,
    each bias's as a product with a row of ones (oneDNN's product is faster than TensorFlow's
    sum), the products one after another: TensorFlow would start them at once, and oneDNN
    products running at once on the same cores take longer than in turn (docs/performance.md).
    """
    flat = {
        INPUTS: tf.reshape(xs, [-1, xs.shape[-1]]),
        STATE: tf.reshape(prev_h, [-1, prev_h.shape[-1]]),
    }
    previous: list[tf.Tensor] = []

    def in_turn(product: Callable[..., tf.Tensor], *args, **kwargs) -> tf.Tensor:
        if under_xla:
            return product(*args, **kwargs)
        with tf.control_dependencies(previous[-1:]):
            previous.append(product(*args, **kwargs))
        return previous[-1]

    d_kernels, d_biases = [], []
    for w, d_pre in zip(weights, d_pres):
        flat_d = tf.reshape(d_pre, [-1, d_pre.shape[-1]])
        if w.inputs is not None and w.state is not None and under_xla:
            joint = tf.matmul(tf.concat([flat[INPUTS], flat[STATE]], 1), flat_d, transpose_a=True)
            by_source = {INPUTS: joint[: w.inputs.shape[0]], STATE: joint[w.inputs.shape[0] :]}
        else:
            by_source = {
                source: in_turn(tf.matmul, flat[source], flat_d, transpose_a=True)
                for source in w.sources
            }
        d_kernels.extend(by_source[source] for source in w.sources)
        if w.bias is not None:
            d_biases.append(in_turn(_column_sums, flat_d, under_xla))
    return d_kernels, d_biases


def _column_sums(matrix: tf.Tensor, under_xla: bool) -> tf.Tensor:
    """`reduce_sum(matrix, 0)`; natively as `ones @ matrix`."""
    if under_xla:
        return tf.reduce_sum(matrix, 0)
    ones = tf.ones([1, tf.shape(matrix)[0]], matrix.dtype)
    return tf.reshape(tf.matmul(ones, matrix), [-1])


def _inputs_gradient(weights: list[Weights], d_pres) -> tf.Tensor:
    """`sum(d_pre @ kernel^T)` over the projections with an inputs term, `[time, batch,
    features]` like the `d_pres` `[time, batch, width]`."""
    d_x = None
    for w, d_pre in zip(weights, d_pres):
        if w.inputs is not None:
            term = dense(d_pre, tf.transpose(w.inputs))
            d_x = term if d_x is None else d_x + term
    return d_x
