"""`recompute_gradient`: a custom gradient that recomputes the forward pass when needed.

Why: differentiating through a `tf.while_loop` makes TensorFlow accumulate every step's
intermediates in TensorLists that the forward function returns to the backward function.
When the loop runs inside an XLA cluster (`jit_compile=True`) and the gradient is taken
outside it (an eager `GradientTape`, or a caller's plain `tf.function`), those TensorLists
would cross the XLA/TF boundary, which TF 2.21 does not support ("Support for TensorList
crossing the XLA/TF boundary is not implemented"). Wrapping the loop in a custom gradient
whose backward function re-runs the forward pass under its own tape keeps every TensorList
inside one compiled function; only plain tensors (the inputs and the incoming gradients) cross.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import tensorflow as tf


def recompute_gradient(fn: Callable[..., Any], tensors: Sequence[tf.Tensor]) -> Any:
    """Returns `fn(*tensors)`, differentiated by re-running `fn` in the backward pass.

    Args:
      fn: a pure function of `tensors` (it may read variables, which get gradients too, but
        must not draw random numbers: randomness enters through `tensors` or a closure).
      tensors: the floating tensors to differentiate with respect to.

    Returns:
      `fn`'s result, with the same nesting.
    """
    tensors = list(tensors)
    structure = []

    @tf.custom_gradient
    def differentiable(*args):
        result = fn(*args)
        structure.append(result)
        flat = tf.nest.flatten(result)

        def grad(*output_grads, variables=None):
            variables = [v for v in (variables or []) if v.dtype.is_floating]
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(args)
                tape.watch(variables)
                recomputed = tf.nest.flatten(fn(*args))
            output_grads = [
                tf.zeros_like(out) if g is None else g for out, g in zip(recomputed, output_grads)
            ]
            grads = tape.gradient(
                recomputed,
                list(args) + variables,
                output_gradients=output_grads,
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
            return grads[: len(args)], grads[len(args) :]

        return flat, grad

    flat = differentiable(*tensors)
    return tf.nest.pack_sequence_as(structure[0], flat)
