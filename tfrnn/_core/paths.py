"""Which loop runs an RNN call: the paths, the one function that picks one, and the table.

| path             | what runs                                              | picked when                                    |
|------------------|--------------------------------------------------------|------------------------------------------------|
| `SUBSTITUTE`     | a function the trace context supplies (TFLite's fused  | the context's `substitute` takes the call      |
|                  | LSTM op as the converter's composite function)         |                                                |
| `STREAM`         | `DENSE` from explicit states, a masked step repeating  | the context streams explicit states (`step`)   |
|                  | the output state (streaming stays exact)               |                                                |
| `DENSE`          | the generic loop, outputs in a dense tensor, unrolled  | the context asks for builtin-only ops (TFLite) |
|                  | for a static single step or `unroll=True`              |                                                |
| `UNROLLED`       | the generic loop unrolled over a static time axis      | `unroll=True`                                  |
| `NATIVE`         | `FAST` without XLA around the loop: every matmul on    | as `FAST`, with XLA asked for, where           |
|                  | TensorFlow's native kernels, the inputs projected      | `native_kernels.native_wins` (bfloat16 on a    |
|                  | before the loop, each step's gate math (and its VJP)   | CPU, large steps) and `compiles_steps`         |
|                  | an XLA-compiled function                               | (larger still) and a gradient may be taken     |
| `NATIVE_FORWARD` | `NATIVE` keeping nothing for a backward pass           | as `NATIVE`, where no gradient may be taken    |
| `SPLIT`          | `FAST` from a graph XLA does not compile: the forward  | as `FAST` with XLA, traced outside the         |
|                  | and backward passes XLA-compiled, the inputs' gradient | caller's `jit_compile` function, where a       |
|                  | a native op (pruned where nothing reads it)            | gradient may be taken                          |
| `FAST`           | `_core.fast_loop`: built-in cells, hand-written        | a built-in cell with a `FastLoopSpec`, no      |
|                  | backward pass, weight gradients batched over time;     | recurrent dropout; without XLA also where      |
|                  | without XLA all on TensorFlow's native kernels         | `native_kernels.native_wins` alone             |
| `RECOMPUTE`      | the generic `tf.while_loop` under a recompute gradient | XLA (the loop's TensorLists must not cross the |
|                  | (`_core.recompute`)                                    | XLA/TF boundary)                               |
| `WHILE`          | the generic `tf.while_loop`, TensorFlow's own gradient | no XLA; or a call traced with an unknown batch |
|                  |                                                        | or time axis while a gradient tape records     |

The last rule: TF 2.21's XLA cannot compile the gradient of the generic while loop when the
batch or the number of timesteps is unknown while tracing (`fit` with a last partial batch, a
`tf.function` with `input_signature=[tf.TensorSpec([None, None, F])]`): the gradients of the
loop's per-step reads need the shapes as compile-time constants (and with the inputs projected
before the loop, the recompute gradient fails with "TensorList input for ZerosLike op is an
uninitialized list"). Such a call runs without XLA when it is a training call or a
`GradientTape` records while it is traced (inside the function or around its call);
inference keeps XLA. The fast loop writes its own backward pass and is not affected.

`choose` answers "which path runs this call" and nothing else does; `RUNNERS` maps each loop
path to its function, which takes `(adapter, options, plan, states, seed)` and returns
`(output, final_states)`; `run` calls it for a `Route`, which the RNN traces in one
`tf.function` per `Route`. A `SUBSTITUTE` route calls the context's substitute in the
caller's trace instead.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from typing import Any, Callable, NamedTuple, Optional

import tensorflow as tf

from tfrnn import loop as loop_lib
from tfrnn._core import fast_loop, native_kernels
from tfrnn._core.builtin_cell import in_xla_context
from tfrnn._core.plan import CallPlan
from tfrnn._core.recompute import recompute_gradient
from tfrnn._core.trace_context import RNNCall, TraceContext


class Path(enum.Enum):
    """How a call's time loop runs (see the module docstring's table)."""

    SUBSTITUTE = "substitute"
    DENSE = "dense"
    STREAM = "stream"
    UNROLLED = "unrolled"
    NATIVE = "native"
    NATIVE_FORWARD = "native_forward"
    SPLIT = "split"
    FAST = "fast"
    RECOMPUTE = "recompute"
    WHILE = "while"


class Route(NamedTuple):
    """A path, whether XLA compiles it, and whether the call's inputs may need a gradient."""

    path: Path
    jit_compile: bool
    input_gradient: bool = True
    """`False` (`FAST`, `NATIVE`): an eager call whose inputs no tape watches, so the fast
    loop's backward pass leaves out their gradient (`_input_gradient`)."""


@dataclasses.dataclass(frozen=True)
class LoopOptions:
    """The RNN options every path reads."""

    return_sequences: bool
    go_backwards: bool
    zero_output_for_mask: bool
    unroll: bool
    jit_compile: bool


def choose(
    options: LoopOptions,
    adapter: Any,
    plan: CallPlan,
    context: TraceContext,
    call: RNNCall,
) -> Route:
    """The route of one call: which path, with XLA or not, and whether the inputs may need
    a gradient (see the module docstring and `Route`)."""
    if context.substitute is not None and context.substitute.takes(call):
        return Route(Path.SUBSTITUTE, False)
    jit_compile = options.jit_compile if context.jit_compile is None else context.jit_compile
    if context.stream is not None:
        return Route(Path.STREAM, jit_compile and not context.builtin_only)
    if context.builtin_only:
        return Route(Path.DENSE, False)
    if options.unroll:
        return Route(Path.UNROLLED, jit_compile)
    if adapter.has_fast_loop(plan.training):
        # An XLA variant the context asks for (export's) stays one, measured faster or not.
        native = _native_route(adapter, plan) if jit_compile and context.jit_compile is None else None
        route = Route(Path.FAST, jit_compile) if native is None else native
        if route == Route(Path.FAST, True) and context.jit_compile is None and _splits(plan):
            return Route(Path.SPLIT, False)
        if route.path in (Path.FAST, Path.NATIVE) and not _input_gradient(plan):
            return route._replace(input_gradient=False)
        return route
    if jit_compile and not _unknown_shape_gradient(plan):
        return Route(Path.RECOMPUTE, True)
    return Route(Path.WHILE, False)


def _native_route(adapter: Any, plan: CallPlan) -> Optional[Route]:
    """The route of a fast-loop call that `native_kernels` takes out of XLA, else `None`."""
    differentiated = functools.lru_cache(maxsize=None)(lambda: _may_be_differentiated(plan))
    if not native_kernels.native_wins(plan.dtype, plan.batch, adapter.recurrent_macs, differentiated):
        return None
    if not native_kernels.compiles_steps(plan.batch, adapter.recurrent_width()):
        return Route(Path.FAST, False)
    return Route(Path.NATIVE if differentiated() else Path.NATIVE_FORWARD, False)


def _splits(plan: CallPlan) -> bool:
    """Whether a fast-loop call with XLA runs as `SPLIT`: traced in a graph that XLA does not
    compile (XLA drops an unread inputs' gradient by itself), where a gradient may be taken."""
    return not tf.executing_eagerly() and not in_xla_context() and _may_be_differentiated(plan)


def _input_gradient(plan: CallPlan) -> bool:
    """Whether a gradient of the call's inputs may be taken.

    Eagerly that is known: a tape records a call only if it watches the call's inputs now (a
    later tape cannot differentiate it). A trace is reused under tapes it never saw, so traced
    calls always keep the inputs' gradient (the caller's `jit_compile` function lets XLA drop it).
    """
    if not tf.executing_eagerly():
        return True
    try:
        from tensorflow.python.eager import record  # no public equivalent
    except ImportError:  # pragma: no cover - a TensorFlow without it: keep the gradient
        return True
    return bool(record.should_record_backprop(tf.nest.flatten(plan.inputs)))


def _unknown_shape_gradient(plan: CallPlan) -> bool:
    """Whether a tape may differentiate a loop traced with an unknown batch or time axis."""
    if tf.executing_eagerly():
        return False  # eager shapes are known
    if plan.batch is not None and plan.timesteps is not None:
        return False
    return _may_be_differentiated(plan)


def _may_be_differentiated(plan: CallPlan) -> bool:
    """Whether a gradient may be taken of the call being traced (or run eagerly)."""
    if plan.training:
        return True  # Keras' fit; and a gradient may follow a training call
    try:
        from tensorflow.python.eager import record  # no public equivalent
    except ImportError:  # pragma: no cover - a TensorFlow without it: training as the sign
        return False
    # True while a GradientTape records, also when it is outside the function being traced
    # (Keras 3 trains subclassed models with `training=None` reaching their layers).
    return bool(record.could_possibly_record())


# -- the runners ------------------------------------------------------------------------------


def _output_spec(adapter: Any, plan: CallPlan) -> Any:
    """`[batch, *output_shape]` of one step (a nest of specs for nested outputs)."""
    batch = tf.TensorShape([plan.batch])
    return tf.nest.map_structure(
        lambda shape: tf.TensorSpec(batch.concatenate(shape), plan.dtype), adapter.output_shape
    )


def _loop_arguments(adapter, options: LoopOptions, plan: CallPlan) -> dict:
    """What both time loops take besides the step, the inputs and the states."""
    return dict(
        output_spec=_output_spec(adapter, plan),
        mask=plan.mask,
        go_backwards=options.go_backwards,
        zero_output_for_mask=options.zero_output_for_mask,
        return_sequences=options.return_sequences,
    )


def _generic(adapter, options, plan, states, seed, **loop_options):
    """The generic loop (`tfrnn.loop.rnn_loop`) over the cell's steps.

    Built-in cells project the inputs of all steps with one matmul before the loop.
    """
    dropout = adapter.sequence_dropout(plan.dynamic_batch(), plan.training, seed)
    if adapter.projects_inputs:
        sequence = adapter.project_inputs(plan.inputs, dropout)

        def step(x_t, prev_states):
            return adapter.step_projected(x_t, prev_states, dropout)

    else:
        sequence = plan.inputs

        def step(x_t, prev_states):
            return adapter.call_step(
                x_t, prev_states, constants=plan.constants, training=plan.training,
                sequence_dropout=dropout,
            )  # fmt: skip

    result = loop_lib.rnn_loop(step, sequence, states, **_loop_arguments(adapter, options, plan), **loop_options)
    output = result.outputs if options.return_sequences else result.last_output
    return output, result.final_states


def _run_while(adapter, options, plan, states, seed):
    return _generic(adapter, options, plan, states, seed)


def _run_unrolled(adapter, options, plan, states, seed):
    return _generic(adapter, options, plan, states, seed, unroll=True)


def _single_or_unrolled(options: LoopOptions, plan: CallPlan) -> bool:
    """A static time axis unrolls where asked, or for one step: no `WHILE` at all."""
    timesteps = plan.timesteps
    return timesteps is not None and (options.unroll or timesteps == 1)


def _run_dense(adapter, options, plan, states, seed):
    unroll = _single_or_unrolled(options, plan)
    return _generic(adapter, options, plan, states, seed, unroll=unroll, dense_outputs=True)


def _run_stream(adapter, options, plan, states, seed):
    """`DENSE` for a piece of a streamed sequence.

    Streaming step by step must give what the whole sequence gives, also at masked steps,
    where the output repeats the last unmasked output: a loop value, not a state. Where the
    cell's output is one of its states (tfrnn's built-in cells: h), that state is the last
    unmasked output, so the loop starts from it.
    """
    index = adapter.output_state_index
    initial_output = states[index] if index is not None else None
    unroll = _single_or_unrolled(options, plan)
    return _generic(
        adapter, options, plan, states, seed,
        unroll=unroll, dense_outputs=True, initial_output=initial_output,
    )  # fmt: skip


def _run_fast(adapter, options, plan, states, seed, **fast_options):
    """`FAST`; `fast_options` are `FastLoop`'s `compiled_steps`, `split_backward`,
    `differentiable` and `input_gradient`."""
    dropout = adapter.sequence_dropout(plan.dynamic_batch(), plan.training, seed)
    return fast_loop.run_fast_loop(
        adapter.fast_loop_spec(plan.training),
        adapter.cell.apply_input_dropout(plan.inputs, dropout),
        states,
        **fast_options,
        **_loop_arguments(adapter, options, plan),
    )


def _run_native(adapter, options, plan, states, seed, **fast_options):
    return _run_fast(adapter, options, plan, states, seed, compiled_steps=True, **fast_options)


def _run_split(adapter, options, plan, states, seed):
    return _run_fast(adapter, options, plan, states, seed, split_backward=True)


def _run_native_forward(adapter, options, plan, states, seed):
    return _run_fast(adapter, options, plan, states, seed, compiled_steps=True, differentiable=False)


def _run_recompute(adapter, options, plan, states, seed):
    """`WHILE` under `recompute_gradient`, passing only floating tensors through it.

    The seed is drawn outside (a variable update must not run twice); the masks derive
    from it inside, so the recomputed forward pass sees the same masks.
    """
    args = {"inputs": plan.inputs, "states": list(states), "constants": plan.constants or []}
    flat = tf.nest.flatten(args)
    floating = [i for i, t in enumerate(flat) if t.dtype.is_floating]

    def forward(*tensors):
        values = list(flat)
        for index, tensor in zip(floating, tensors):
            values[index] = tensor
        a = tf.nest.pack_sequence_as(args, values)
        replanned = dataclasses.replace(plan, inputs=a["inputs"], constants=a["constants"] or None)
        return _generic(adapter, options, replanned, a["states"], seed)

    return recompute_gradient(forward, [flat[i] for i in floating])


def run(route: Route, adapter, options: LoopOptions, plan: CallPlan, states, seed):
    """Runs `route`'s loop path (`RUNNERS`): `(output, final_states)`."""
    if not route.input_gradient:
        return RUNNERS[route.path](adapter, options, plan, states, seed, input_gradient=False)
    return RUNNERS[route.path](adapter, options, plan, states, seed)


Runner = Callable[[Any, LoopOptions, CallPlan, list, Optional[tf.Tensor]], tuple]

# The loop paths; a SUBSTITUTE route calls the trace context's substitute instead.
RUNNERS: dict[Path, Runner] = {
    Path.DENSE: _run_dense,
    Path.STREAM: _run_stream,
    Path.UNROLLED: _run_unrolled,
    Path.NATIVE: _run_native,
    Path.NATIVE_FORWARD: _run_native_forward,
    Path.SPLIT: _run_split,
    Path.FAST: _run_fast,
    Path.RECOMPUTE: _run_recompute,
    Path.WHILE: _run_while,
}
