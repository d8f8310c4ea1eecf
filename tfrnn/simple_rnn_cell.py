"""`SimpleRNNCell`: Keras' fully connected recurrence `h' = activation(x W + h U + b)`."""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from tfrnn._core import activations
from tfrnn._core.builtin_cell import (
    INPUTS,
    STATE,
    BuiltinCell,
    DropoutMasks,
    FastLoopSpec,
    Projection,
    gated_recurrent_matmul,
    output_vjp,
)


class SimpleRNNCell(BuiltinCell):
    """Fully connected recurrent cell with Keras' weights and options.

    For inputs `x` `[batch, features]` and state `h` `[batch, units]`::

        h' = activation(x @ kernel + bias + h @ recurrent_kernel)

    Weights (Keras layout, copy one-to-one from `tf_keras.layers.SimpleRNNCell`):
    `kernel [features, units]`, `recurrent_kernel [units, units]`, `bias [units]`.
    `state_size = units`; the output is h. Dropout: one input and one recurrent mask per
    sequence, as in Keras.

    >>> tfrnn.RNN(tfrnn.SimpleRNNCell(8), return_sequences=True)(tf.ones([2, 5, 3])).shape
    TensorShape([2, 5, 8])

    Args:
      units: size of h.
      activation: default tanh.
      **kwargs: see `BuiltinCell`.
    """

    gates = 1

    def __init__(self, units: int, activation: activations.Activation = "tanh", **kwargs):
        super().__init__(units, **kwargs)
        self.set_activations(activation)
        self.state_size = self.units
        self.output_size = self.units
        self.state_names = ["h"]

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "activation": self.activation_name,
        }

    def fast_loop_spec(self) -> FastLoopSpec:
        def elementwise(pres, states):
            h = self.activation(pres[0])
            return h, [h]

        terms = ((INPUTS, self.read(self.kernel)), (STATE, self.read(self.recurrent_kernel)))
        projections = (Projection(terms, self.read(self.bias)),)
        act_vjp = output_vjp(self.activation_name)
        if act_vjp is None:
            return FastLoopSpec(projections, elementwise, output_state=0)

        def elementwise_saving(pres, states):
            h = self.activation(pres[0])
            return h, [h], h

        def saved_vjp(h, states, d_output, d_new_states):
            d_h = d_new_states[0] if d_output is None else d_output + d_new_states[0]
            return [act_vjp(h, d_h)], [None]

        return FastLoopSpec(
            projections,
            elementwise,
            elementwise_saving=elementwise_saving,
            saved_width=self.units,
            saved_vjp=saved_vjp,
            output_state=0,
        )

    def step(
        self,
        projected_inputs: tf.Tensor,
        states: list[tf.Tensor],
        dropout_masks: Optional[DropoutMasks] = None,
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One step from projected inputs: `(h, [h])`."""
        masks = dropout_masks[1] if dropout_masks else ()
        h = self.activation(
            projected_inputs + gated_recurrent_matmul(states[0], self.read(self.recurrent_kernel), 1, masks)
        )
        return h, [h]
