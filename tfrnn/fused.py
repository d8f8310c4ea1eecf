"""`fused_rnn`: the fast path for built-in cells, a time loop with a hand-written backward pass.

A built-in cell's step is a few matmuls followed by elementwise gate math (`FusedSpec`):

    pre_g = sum_k source_k @ kernel_k + bias_g     (source: the step's inputs or the state h)
    output, new_states = elementwise(pres, prev_states)

Differentiating the generic `tf.while_loop` makes TensorFlow save every intermediate of every
step and run the matmul gradients one step at a time. `fused_rnn` saves, per step, only the
pre-activations and the previous states; its backward loop does per step only what is truly
sequential: the VJP of the elementwise part (the cell's hand-written one, or a local
`GradientTape`) and `d_pre @ recurrent_kernel^T`. The weight gradients, the bias gradients
and the input gradient are then one large matmul each over all timesteps, which runs much
closer to the machine's matmul peak. Masking follows Keras' rules exactly (see
`tfrnn.unroll`), with its gradient written out in `_mask_gradients`.

Measured on XLA:CPU (see tools/benchmark.py) and kept because they won:
* the input projection `x_t @ W` is computed inside the loop: one big matmul before the
  loop measured slower, because the loop must then read a slice of a much larger array each
  step, which XLA emits slowly. (One joint `concat([x_t, h]) @ concat([W, R])` per step was
  no faster, and concatenating the kernels costs a copy of all weights per call, which
  dominates a one-step streaming call.)
* the transposed recurrent kernels are formed once, before the backward loop;
* a projection with both an input and a state term gets one weight-gradient matmul over
  `concat([X, H])` instead of two.
"""

from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

from tfrnn.builtin_cell import INPUTS, STATE, FusedSpec, Projection


def _time_major(tensor: tf.Tensor) -> tf.Tensor:
    return tf.transpose(tensor, [1, 0] + list(range(2, tensor.shape.rank)))


def _where(mask_t: Optional[tf.Tensor], new: tf.Tensor, old: tf.Tensor) -> tf.Tensor:
    if mask_t is None:
        return new
    return tf.where(tf.reshape(mask_t, [-1] + [1] * (new.shape.rank - 1)), new, old)


def _ta(dtype, size, shape) -> tf.TensorArray:
    return tf.TensorArray(dtype, size=size, element_shape=shape)


def _forward_kernels(projections):
    """Per projection: `(input kernel or None, state kernel or None, has both)`."""
    result = []
    for projection in projections:
        by_source = {INPUTS: None, STATE: None}
        for source, kernel in projection.terms:
            if by_source[source] is not None:
                raise ValueError(f"a projection has two {source} terms; sum their kernels")
            by_source[source] = kernel
        joint = by_source[INPUTS] is not None and by_source[STATE] is not None
        result.append((by_source[INPUTS], by_source[STATE], joint))
    return result


def _project(projections, kernels, x_t, h):
    pres = []
    for projection, (w, r, _) in zip(projections, kernels):
        if w is not None and r is not None:
            pre = tf.matmul(x_t, w) + tf.matmul(h, r)
        elif w is not None:
            pre = tf.matmul(x_t, w)
        else:
            pre = tf.matmul(h, r)
        if projection.bias is not None:
            pre = pre + projection.bias
        pres.append(pre)
    return pres


def _mask_gradients(mask_t, d_carried, d_seq, d_states, zero_output_for_mask):
    """Splits incoming gradients at a (possibly) masked step.

    Forward: `carried = where(m, out, prev)`, `seq = where(m, out, 0 or prev)`,
    `states = where(m, new, prev_states)`. Returns `(d_out, d_prev_carried, d_new_states,
    d_kept_states)`: what flows into the cell's step and what skips it.
    """
    zeros = tf.zeros_like(d_carried)
    total = d_carried if d_seq is None else d_carried + d_seq
    skipped = d_carried if (d_seq is None or zero_output_for_mask) else total
    d_out = _where(mask_t, total, zeros)
    d_prev_carried = _where(mask_t, zeros, skipped)
    d_new = [_where(mask_t, d, tf.zeros_like(d)) for d in d_states]
    d_kept = [_where(mask_t, tf.zeros_like(d), d) for d in d_states]
    return d_out, d_prev_carried, d_new, d_kept


def _tape_vjp(elementwise, pres, prev_states, d_out, d_new):
    with tf.GradientTape() as tape:
        tape.watch(pres + prev_states)
        output, new_states = elementwise(pres, prev_states)
    grads = tape.gradient(
        [output] + list(new_states),
        pres + prev_states,
        output_gradients=[d_out] + list(d_new),
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    return grads[: len(pres)], grads[len(pres) :]


def fused_rnn(
    spec: FusedSpec,
    inputs: tf.Tensor,
    initial_states: Sequence[tf.Tensor],
    *,
    output_spec: tf.TensorSpec,
    mask: Optional[tf.Tensor] = None,
    go_backwards: bool = False,
    zero_output_for_mask: bool = False,
    return_sequences: bool = False,
) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """Runs a built-in cell over `inputs` `[batch, time, features]`; see the module docstring.

    Same contract as `tfrnn.unroll.rnn_loop`, with the output already picked: returns
    `(outputs [batch, time, ...] or last_output [batch, ...], final_states)`, differentiable
    with respect to `inputs`, `initial_states` and every kernel and bias in `spec`.
    """
    # Weights enter the custom gradient as tensors, so their gradients are returned as such.
    kernels = [tf.convert_to_tensor(k) for p in spec.projections for _, k in p.terms]
    biases = [tf.convert_to_tensor(p.bias) for p in spec.projections if p.bias is not None]
    num_states, num_kernels = len(initial_states), len(kernels)
    vjp = spec.elementwise_vjp or (
        lambda pres, states, d_out, d_new: _tape_vjp(spec.elementwise, pres, states, d_out, d_new)
    )

    def rebuild(weights):
        kernel_iter, bias_iter = iter(weights[:num_kernels]), iter(weights[num_kernels:])
        return tuple(
            Projection(
                tuple((source, next(kernel_iter)) for source, _ in p.terms),
                next(bias_iter) if p.bias is not None else None,
            )
            for p in spec.projections
        )

    mask_tm = None if mask is None else tf.transpose(mask)
    if go_backwards and mask_tm is not None:
        mask_tm = tf.reverse(mask_tm, [0])

    @tf.custom_gradient
    def run(inputs, *args):
        states = list(args[:num_states])
        projections = rebuild(list(args[num_states:]))
        forward_kernels = _forward_kernels(projections)
        xs = _time_major(inputs)
        if go_backwards:
            xs = tf.reverse(xs, [0])
        timesteps = tf.shape(xs)[0] if xs.shape[0] is None else xs.shape[0]

        def mask_reader():
            if mask_tm is None:
                return lambda t: None
            mask_ta = _ta(tf.bool, timesteps, mask_tm.shape[1:]).unstack(mask_tm)
            return mask_ta.read

        read_mask = mask_reader()
        x_ta = _ta(xs.dtype, timesteps, xs.shape[1:]).unstack(xs)
        zero_output = tf.zeros(
            tf.concat([tf.shape(states[0])[:1], output_spec.shape[1:]], 0), output_spec.dtype
        )
        # Saved for the backward pass: each step's pre-activations and previous states.
        pre_tas = [
            _ta(xs.dtype, timesteps, output_spec.shape[:1].concatenate(p.terms[0][1].shape[-1:]))
            for p in projections
        ]
        state_tas = [_ta(s.dtype, timesteps, s.shape) for s in states]
        out_ta = _ta(output_spec.dtype, timesteps if return_sequences else 0, output_spec.shape)

        def body(t, prev_output, out_ta, pre_tas, state_tas, *prev_states):
            prev_states = list(prev_states)
            mask_t = read_mask(t)
            pres = _project(projections, forward_kernels, x_ta.read(t), prev_states[0])
            output, new_states = spec.elementwise(pres, prev_states)
            new_states = [_where(mask_t, n, o) for n, o in zip(new_states, prev_states)]
            carried = _where(mask_t, output, prev_output)
            if return_sequences:
                sequence_output = carried
                if zero_output_for_mask:
                    sequence_output = _where(mask_t, output, zero_output)
                out_ta = out_ta.write(t, sequence_output)
            pre_tas = [ta.write(t, pre) for ta, pre in zip(pre_tas, pres)]
            state_tas = [ta.write(t, s) for ta, s in zip(state_tas, prev_states)]
            return [t + 1, carried, out_ta, pre_tas, state_tas] + new_states

        results = tf.while_loop(
            lambda t, *_: t < timesteps,
            body,
            [tf.constant(0), zero_output, out_ta, pre_tas, state_tas] + states,
            maximum_iterations=timesteps,
        )
        last_output, out_ta, pre_tas, state_tas = results[1:5]
        final_states = list(results[5:])
        output = _time_major(out_ta.stack()) if return_sequences else last_output
        saved_pres = [ta.stack() for ta in pre_tas]
        saved_states = [ta.stack() for ta in state_tas]

        def grad(d_output, *d_final_states):
            # TensorArrays must not cross from the forward into the backward function (XLA
            # cannot pass TensorLists between functions): rebuild them from dense tensors.
            read_mask = mask_reader()
            d_states = [
                tf.zeros_like(s) if d is None else d for s, d in zip(final_states, d_final_states)
            ]
            d_output = tf.zeros_like(output) if d_output is None else d_output
            d_seq_ta = None
            d_carried = d_output
            if return_sequences:
                d_seq_ta = _ta(output_spec.dtype, timesteps, output_spec.shape)
                d_seq_ta = d_seq_ta.unstack(_time_major(d_output))
                d_carried = zero_output
            saved_pre_tas = [_ta(p.dtype, timesteps, p.shape[1:]).unstack(p) for p in saved_pres]
            saved_state_tas = [
                _ta(s.dtype, timesteps, s.shape[1:]).unstack(s) for s in saved_states
            ]
            d_pre_tas = [_ta(p.dtype, timesteps, p.shape[1:]) for p in saved_pres]
            state_kernels_t = [
                (index, tf.transpose(r)) for index, (_, r, _) in enumerate(forward_kernels) if r is not None
            ]

            def back(s, d_carried, d_pre_tas, *d_states):
                t = timesteps - 1 - s
                d_seq = None if d_seq_ta is None else d_seq_ta.read(t)
                d_out, d_carried, d_new, d_kept = _mask_gradients(
                    read_mask(t), d_carried, d_seq, list(d_states), zero_output_for_mask
                )
                pres = [ta.read(t) for ta in saved_pre_tas]
                prev_states = [ta.read(t) for ta in saved_state_tas]
                d_pres, d_prev = vjp(pres, prev_states, d_out, d_new)
                d_prev = [a + b for a, b in zip(d_prev, d_kept)]
                for index, kernel_t in state_kernels_t:
                    d_prev[0] = d_prev[0] + tf.matmul(d_pres[index], kernel_t)
                d_pre_tas = [ta.write(t, d) for ta, d in zip(d_pre_tas, d_pres)]
                return [s + 1, d_carried, d_pre_tas] + d_prev

            results = tf.while_loop(
                lambda s, *_: s < timesteps,
                back,
                [tf.constant(0), d_carried, d_pre_tas] + d_states,
                maximum_iterations=timesteps,
            )
            d_pres = [ta.stack() for ta in results[2]]
            d_initial = list(results[3:])
            d_kernels, d_biases, d_x = _weight_gradients(
                projections, forward_kernels, d_pres, xs, saved_states[0]
            )
            d_inputs = tf.reshape(d_x, tf.shape(xs))
            if go_backwards:
                d_inputs = tf.reverse(d_inputs, [0])
            return [_time_major(d_inputs)] + d_initial + d_kernels + d_biases

        return (output, *final_states), grad

    results = run(inputs, *initial_states, *kernels, *biases)
    return results[0], list(results[1:])


def _weight_gradients(projections, forward_kernels, d_pres, xs, saved_h):
    """One matmul per projection over all timesteps: kernel, bias and input gradients."""
    flat_x = tf.reshape(xs, [-1, xs.shape[-1]])
    flat_h = tf.reshape(saved_h, [-1, saved_h.shape[-1]])
    d_kernels, d_biases, d_x = [], [], None
    for projection, (w, r, joint), d_pre in zip(projections, forward_kernels, d_pres):
        flat_d = tf.reshape(d_pre, [-1, d_pre.shape[-1]])
        if joint:
            d_joint = tf.matmul(tf.concat([flat_x, flat_h], 1), flat_d, transpose_a=True)
            by_source = {INPUTS: d_joint[: w.shape[0]], STATE: d_joint[w.shape[0] :]}
        else:
            source = flat_x if w is not None else flat_h
            d_only = tf.matmul(source, flat_d, transpose_a=True)
            by_source = {INPUTS if w is not None else STATE: d_only}
        d_kernels.extend(by_source[source] for source, _ in projection.terms)
        if w is not None:
            term = tf.matmul(flat_d, w, transpose_b=True)
            d_x = term if d_x is None else d_x + term
        if projection.bias is not None:
            d_biases.append(tf.reduce_sum(flat_d, 0))
    return d_kernels, d_biases, d_x
