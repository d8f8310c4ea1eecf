"""`run_fast_loop`: the fast path for built-in cells, a time loop with a hand-written backward pass.

A built-in cell's step is a few matmuls followed by elementwise gate math (`FastLoopSpec`):

    pre_g = sum_k source_k @ kernel_k + bias_g     (source: the step's inputs or the state h)
    output, new_states = elementwise(pres, prev_states)

Differentiating the generic `tf.while_loop` makes TensorFlow save every intermediate of every
step and run the matmul gradients one step at a time. `run_fast_loop` saves, per step, only what
the cell's backward needs (its gate activations, `FastLoopSpec.saved`, or else the
pre-activations) and the previous states; its backward loop does per step only what is truly
sequential: the VJP of the elementwise part (the cell's hand-written one, or a local
`GradientTape`) and `d_pre @ recurrent_kernel^T`. The weight gradients, the bias gradients
and the input gradient are then one large matmul each over all timesteps, which runs much
closer to the machine's matmul peak. Masking follows Keras' rules exactly (see
`tfrnn.unroll`), with its gradient written out in `_mask_gradients`. Without a gradient
tape XLA drops the saves (their TensorArrays are dead loop state), so inference pays nothing
for them.

Measured on XLA:CPU, 2 cores (tools/benchmark.py and micro-benchmarks of the loop; medians of
interleaved runs; the machine is shared, so each figure is from a quiet moment and was
repeated). Kept because they won:
* under XLA, a batch of 16 to 64 rows (LSTM; see `_groups`) runs as two independent
  half-batch chains in the same loop, forward and backward: XLA's thunk executor runs them
  on both cores at once, where one chain leaves a core idle during every elementwise step and
  small matmul. LSTM 32x100x64x128 inference 6.2 -> 4.4 ms, training step 21.1 -> 17.5-18.5
  ms; GRU inference 5.3 -> 4.3 ms, GRU training step unchanged within noise. Caveat: it needs
  the second core; while another process keeps a core busy the two chains serialize and a
  call can take 6-8 ms instead of 4.4 (one chain: ~6.5 either way). Larger steps (128x512
  units) lost: their matmuls already use both cores.
* the backward loop reads each step's saved tensors one iteration ahead into the loop state:
  read where they are used, XLA fuses the dynamic slice into every elementwise consumer,
  where it becomes scalar code (backward loop 7.4 -> 6.3 ms in a profile).
* the LSTM keeps its activated gates for the backward pass (`FastLoopSpec.saved`), which then
  recomputes only tanh(c); the GRU measured slower so (training step 15.7 -> 17.3 ms) and
  keeps its pre-activations.
* without a mask the output is h itself and is not carried (or saved) a second time.
* under XLA the cells' sigmoid gates are computed from tanh (`builtin_cell.fast_activation`).
* the input projection `x_t @ W` is computed inside the loop: one big matmul before the
  loop measured no faster at batch 1 (0.74 vs 0.75 ms) and slower at batch 32 (6.6 vs 6.1
  ms), because each step must then read a slice of a much larger array, which XLA emits
  slowly; reading it one step ahead did not help either. (One joint `concat([x_t, h]) @
  concat([W, R])` per step was no faster, and concatenating the kernels costs a copy of all
  weights per call, which dominates a one-step streaming call.)
* the transposed recurrent kernels are formed once, before the backward loop;
* a projection with both an input and a state term gets one weight-gradient matmul over
  `concat([X, H])` instead of two.
Tried and dropped: partial unrolling of the loop body (2 or 4 steps per iteration: batch 1
0.72 -> 0.79 ms, batch 32 no gain); splitting the recurrent matmul into 2 or 4 column blocks
(no concurrency gained at batch 1, slower at batch 32); a transposed `[units, batch]` carry
(no gain, much slower with a precomputed projection); four or eight chains (no better than
two); XLA already removes the saves from the inference loop, so no separate forward-only
loop is needed. What remains is matmul-bound: XLA:CPU's batch-1 matrix-vector product
(`h @ R`, 128x512) takes 2.4 us of a 4 us step, and its small matmuls reach ~140 GFLOP/s.
"""

from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

from tfrnn._core.builtin_cell import INPUTS, STATE, FastLoopSpec, Projection, in_xla_context

# Under XLA, a static batch of at least GROUP_MIN_BATCH rows whose pre-activations are at
# most GROUP_MAX_SIZE elements per step runs as two chains (see the module docstring); larger
# steps' matmuls already use both cores.
GROUP_MIN_BATCH = 16
GROUP_MAX_SIZE = 32 * 1024


def _time_major(tensor: tf.Tensor) -> tf.Tensor:
    return tf.transpose(tensor, [1, 0] + list(range(2, tensor.shape.rank)))


def _where(mask_t: Optional[tf.Tensor], new: tf.Tensor, old: tf.Tensor) -> tf.Tensor:
    if mask_t is None:
        return new
    return tf.where(tf.reshape(mask_t, [-1] + [1] * (new.shape.rank - 1)), new, old)


def _add(a: Optional[tf.Tensor], b: Optional[tf.Tensor]) -> Optional[tf.Tensor]:
    """`a + b` where `None` stands for zeros."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _ta(dtype, size, shape) -> tf.TensorArray:
    return tf.TensorArray(dtype, size=size, element_shape=shape)


def _groups(batch: Optional[int], width: int) -> list[tuple[int, Optional[int]]]:
    """`(start, size)` of each independent chain over the batch; one chain if unknown."""
    if (
        batch is None
        or batch < GROUP_MIN_BATCH
        or batch * width > GROUP_MAX_SIZE
        or not in_xla_context()
    ):
        return [(0, None)]
    half = (batch + 1) // 2
    return [(0, half), (half, batch - half)]


def _rows(tensor: Optional[tf.Tensor], group, axis: int = 0) -> Optional[tf.Tensor]:
    """The group's rows of `tensor` along its batch `axis`."""
    start, size = group
    if tensor is None or size is None:
        return tensor
    index = [slice(None)] * axis + [slice(start, start + size)]
    return tensor[tuple(index)]


def _join(parts: list, axis: int = 0):
    return parts[0] if len(parts) == 1 else tf.concat(parts, axis)


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
    d_kept_states)`: what flows into the cell's step and what skips it (`None`: zeros).
    """
    if mask_t is None:
        return _add(d_carried, d_seq), None, list(d_states), [None] * len(d_states)
    zeros = tf.zeros_like(d_carried)
    total = _add(d_carried, d_seq)
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
    d_out = tf.zeros_like(output) if d_out is None else d_out
    grads = tape.gradient(
        [output] + list(new_states),
        pres + prev_states,
        output_gradients=[d_out] + list(d_new),
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    return grads[: len(pres)], grads[len(pres) :]


def run_fast_loop(
    spec: FastLoopSpec,
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
    if spec.saved_vjp is not None:
        save = lambda pres, states: [spec.saved(pres, states)]  # noqa: E731
        vjp = lambda saved, states, d_out, d_new: spec.saved_vjp(  # noqa: E731
            saved[0], states, d_out, d_new
        )
    else:
        save = lambda pres, states: pres  # noqa: E731
        vjp = spec.elementwise_vjp or (
            lambda pres, states, d_out, d_new: _tape_vjp(
                spec.elementwise, pres, states, d_out, d_new
            )
        )
    # Without a mask the carried output is the state `output_state` itself: not carried twice.
    carry_output = mask is not None or spec.output_state is None

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
        groups = _groups(xs.shape[1], sum(p.terms[0][1].shape[-1] for p in projections))

        def mask_readers(groups):
            if mask_tm is None:
                return [lambda t: None] * len(groups)
            readers = []
            for group in groups:
                rows = _rows(mask_tm, group, axis=1)
                readers.append(_ta(tf.bool, timesteps, rows.shape[1:]).unstack(rows).read)
            return readers

        read_masks = mask_readers(groups)
        x_ta = _ta(xs.dtype, timesteps, xs.shape[1:]).unstack(xs)
        group_states = [[_rows(s, g) for s in states] for g in groups]
        zero_outputs = [
            tf.zeros(
                tf.concat([tf.shape(s[0])[:1], output_spec.shape[1:]], 0), output_spec.dtype
            )
            for s in group_states
        ]

        def element(shape_like: tf.Tensor, width=None) -> tf.TensorShape:
            shape = shape_like.shape
            return shape if width is None else shape[:1].concatenate([width])

        saved_widths = (
            [spec.saved_width]
            if spec.saved_vjp is not None
            else [p.terms[0][1].shape[-1] for p in projections]
        )
        init = []
        for g, g_states in enumerate(group_states):
            init.append(
                {
                    "output": zero_outputs[g] if carry_output else tf.zeros([0]),
                    "seq": _ta(
                        output_spec.dtype,
                        timesteps if return_sequences else 0,
                        element(zero_outputs[g]),
                    ),
                    "saved": [
                        _ta(xs.dtype, timesteps, element(g_states[0], w)) for w in saved_widths
                    ],
                    "prev": [_ta(s.dtype, timesteps, s.shape) for s in g_states],
                    "states": g_states,
                }
            )

        def body(t, carry):
            x_t = x_ta.read(t)
            result = []
            for g, (group, c) in enumerate(zip(groups, carry)):
                mask_t = read_masks[g](t)
                prev_states = list(c["states"])
                pres = _project(projections, forward_kernels, _rows(x_t, group), prev_states[0])
                output, new_states = spec.elementwise(pres, prev_states)
                new_states = [_where(mask_t, n, o) for n, o in zip(new_states, prev_states)]
                carried = _where(mask_t, output, c["output"]) if carry_output else c["output"]
                seq_ta = c["seq"]
                if return_sequences:
                    sequence_output = carried if carry_output else output
                    if zero_output_for_mask:
                        sequence_output = _where(mask_t, output, zero_outputs[g])
                    seq_ta = seq_ta.write(t, sequence_output)
                saved = save(pres, prev_states)
                result.append(
                    {
                        "output": carried,
                        "seq": seq_ta,
                        "saved": [ta.write(t, s) for ta, s in zip(c["saved"], saved)],
                        "prev": [ta.write(t, s) for ta, s in zip(c["prev"], prev_states)],
                        "states": new_states,
                    }
                )
            return t + 1, result

        _, final = tf.while_loop(
            lambda t, _: t < timesteps,
            body,
            (tf.constant(0), init),
            maximum_iterations=timesteps,
        )
        final_states = [_join([c["states"][i] for c in final]) for i in range(num_states)]
        if return_sequences:
            output = _time_major(_join([c["seq"].stack() for c in final], axis=1))
        elif carry_output:
            output = _join([c["output"] for c in final])
        else:
            output = final_states[spec.output_state]
        saved_all = [[ta.stack() for ta in c["saved"]] for c in final]
        prev_all = [[ta.stack() for ta in c["prev"]] for c in final]

        def grad(d_output, *d_final_states):
            return _backward(
                spec,
                vjp,
                projections,
                forward_kernels,
                xs,
                timesteps,
                groups,
                mask_readers(groups),
                saved_all,
                prev_all,
                final_states,
                output,
                d_output,
                d_final_states,
                output_spec,
                carry_output=carry_output,
                go_backwards=go_backwards,
                zero_output_for_mask=zero_output_for_mask,
                return_sequences=return_sequences,
            )

        return (output, *final_states), grad

    results = run(inputs, *initial_states, *kernels, *biases)
    return results[0], list(results[1:])


def _backward(
    spec,
    vjp,
    projections,
    forward_kernels,
    xs,
    timesteps,
    groups,
    read_masks,
    saved_all,
    prev_all,
    final_states,
    output,
    d_output,
    d_final_states,
    output_spec,
    *,
    carry_output,
    go_backwards,
    zero_output_for_mask,
    return_sequences,
):
    """The backward pass of `run_fast_loop`: the gradients of `run`'s inputs, in its order.

    TensorArrays must not cross from the forward into the backward function (XLA cannot pass
    TensorLists between functions): they are rebuilt here from the stacked dense tensors.
    """
    d_states = [tf.zeros_like(s) if d is None else d for s, d in zip(final_states, d_final_states)]
    d_output = tf.zeros_like(output) if d_output is None else d_output
    d_seq_tm = _time_major(d_output) if return_sequences else None
    if not return_sequences and not carry_output:
        # The last output is the state `output_state`: its gradient joins that state's.
        index = spec.output_state
        d_states[index] = d_states[index] + d_output
    state_kernels_t = [
        (index, tf.transpose(r)) for index, (_, r, _) in enumerate(forward_kernels) if r is not None
    ]
    init = []
    for g, group in enumerate(groups):
        rows = prev_all[g][0].shape[1:2]  # the group's batch
        entry = {
            "states": [_rows(d, group) for d in d_states],
            "d_pres": [
                _ta(xs.dtype, timesteps, rows.concatenate(p.terms[0][1].shape[-1:]))
                for p in projections
            ],
        }
        if carry_output:
            if return_sequences:
                shape = tf.concat([tf.shape(prev_all[g][0])[1:2], output_spec.shape[1:]], 0)
                entry["carried"] = tf.zeros(shape, output_spec.dtype)
            else:
                entry["carried"] = _rows(d_output, group)
        init.append(entry)
    saved_tas = [
        [_ta(s.dtype, timesteps, s.shape[1:]).unstack(s) for s in saved_all[g]]
        for g in range(len(groups))
    ]
    prev_tas = [
        [_ta(s.dtype, timesteps, s.shape[1:]).unstack(s) for s in prev_all[g]]
        for g in range(len(groups))
    ]
    d_seq_ta = None
    if return_sequences:
        d_seq_ta = _ta(output_spec.dtype, timesteps, output_spec.shape).unstack(d_seq_tm)

    def read_step(g, t):
        """Step `t`'s saved tensors (and incoming sequence gradient) for group `g`."""
        return {
            "saved": [ta.read(t) for ta in saved_tas[g]],
            "prev": [ta.read(t) for ta in prev_tas[g]],
            "d_seq": [] if d_seq_ta is None else [_rows(d_seq_ta.read(t), groups[g])],
        }

    # Each iteration reads the next step's tensors into the loop state (software pipelining):
    # read where they are used, XLA fuses each dynamic slice into every elementwise consumer,
    # where it becomes scalar code (LSTM 32x100x64x128 backward loop 2x slower).
    def first_reads(g):
        def zeros():  # no steps: the loop does not run
            stacked = {
                "saved": saved_all[g],
                "prev": prev_all[g],
                "d_seq": [] if d_seq_ta is None else [_rows(d_seq_tm, groups[g], axis=1)],
            }
            return tf.nest.map_structure(lambda x: tf.zeros(tf.shape(x)[1:], x.dtype), stacked)

        if isinstance(timesteps, int):
            return read_step(g, timesteps - 1) if timesteps > 0 else zeros()
        return tf.cond(timesteps > 0, lambda: read_step(g, tf.maximum(timesteps - 1, 0)), zeros)

    for g, entry in enumerate(init):
        entry["next"] = first_reads(g)

    def back(s, carry):
        t = timesteps - 1 - s
        result = []
        for g, (group, c) in enumerate(zip(groups, carry)):
            now = c["next"]
            d_out, d_carried, d_new, d_kept = _mask_gradients(
                read_masks[g](t),
                c.get("carried"),
                now["d_seq"][0] if now["d_seq"] else None,
                list(c["states"]),
                zero_output_for_mask,
            )
            prev_states = now["prev"]
            d_pres, d_prev = vjp(now["saved"], prev_states, d_out, d_new)
            d_prev = [_add(a, b) for a, b in zip(d_prev, d_kept)]
            for index, kernel_t in state_kernels_t:
                d_prev[0] = _add(d_prev[0], tf.matmul(d_pres[index], kernel_t))
            d_prev = [tf.zeros_like(p) if d is None else d for p, d in zip(prev_states, d_prev)]
            entry = {
                "states": d_prev,
                "d_pres": [ta.write(t, d) for ta, d in zip(c["d_pres"], d_pres)],
                "next": read_step(g, tf.maximum(t - 1, 0)),
            }
            if carry_output:
                entry["carried"] = tf.zeros_like(c["carried"]) if d_carried is None else d_carried
            result.append(entry)
        return s + 1, result

    _, final = tf.while_loop(
        lambda s, _: s < timesteps,
        back,
        (tf.constant(0), init),
        maximum_iterations=timesteps,
    )
    d_pres = [_join([c["d_pres"][i].stack() for c in final], axis=1) for i in range(len(projections))]
    d_initial = [_join([c["states"][i] for c in final]) for i in range(len(final_states))]
    saved_h = _join([prev_all[g][0] for g in range(len(groups))], axis=1)
    d_kernels, d_biases, d_x = _weight_gradients(projections, forward_kernels, d_pres, xs, saved_h)
    d_inputs = tf.reshape(d_x, tf.shape(xs))
    if go_backwards:
        d_inputs = tf.reverse(d_inputs, [0])
    return [_time_major(d_inputs)] + d_initial + d_kernels + d_biases


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
