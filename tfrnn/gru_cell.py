"""`GRUCell`: Keras' GRU cell (gate order z, r, h), `reset_after=True` and `False`."""

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
    fast_activation,
    gated_recurrent_matmul,
    output_vjp,
)


class GRUCell(BuiltinCell):
    """Gated recurrent unit with Keras' weights, gate order and options.

    For inputs `x` `[batch, features]` and state `h` `[batch, units]`, with gate order z
    (update), r (reset), h (candidate)::

        x_z, x_r, x_h = split(x @ kernel + input_bias, 3)
        reset_after=True (default; bias [2, 3 * units] = [input_bias, recurrent_bias]):
            r_z, r_r, r_h = split(h @ recurrent_kernel + recurrent_bias, 3)
            z = recurrent_activation(x_z + r_z);  r = recurrent_activation(x_r + r_r)
            candidate = activation(x_h + r * r_h)
        reset_after=False (bias [3 * units], all on the input side):
            z = recurrent_activation(x_z + h @ U_z);  r = recurrent_activation(x_r + h @ U_r)
            candidate = activation(x_h + (r * h) @ U_h)
        h' = z * h + (1 - z) * candidate

    Weights (Keras layout, copy one-to-one from `tf_keras.layers.GRUCell`):
    `kernel [features, 3 * units]`, `recurrent_kernel [units, 3 * units]`
    (`U_z, U_r, U_h` side by side), `bias` as above. `state_size = units`.

    Dropout follows tf-keras: one mask per sequence; with `recurrent_dropout > 0` every gate
    has its own input and recurrent mask, otherwise one input mask serves all gates. The
    final interpolation `z * h` always uses the undropped h.

    >>> tfrnn.RNN(tfrnn.GRUCell(16, reset_after=False))(tf.ones([2, 7, 4])).shape
    TensorShape([2, 16])

    Args:
      units: size of h.
      activation: for the candidate (default tanh).
      recurrent_activation: for the gates (default sigmoid).
      reset_after: apply the reset gate after the recurrent matmul (Keras' default, the
        cuDNN-compatible variant) or before it.
      **kwargs: see `BuiltinCell`.
    """

    gates = 3

    def __init__(
        self,
        units: int,
        activation: activations.Activation = "tanh",
        recurrent_activation: activations.Activation = "sigmoid",
        reset_after: bool = True,
        **kwargs,
    ):
        super().__init__(units, **kwargs)
        self.set_activations(activation, recurrent_activation)
        self.reset_after = bool(reset_after)
        self.state_size = self.units
        self.output_size = self.units
        self.state_names = ["h"]

    def bias_shape(self) -> list[int]:
        if self.reset_after:
            return [2, 3 * self.units]
        return [3 * self.units]

    def input_bias(self) -> Optional[tf.Tensor]:
        if self.bias is None or not self.reset_after:
            return self.read(self.bias)
        return self.read(self.bias)[0]

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "activation": self.activation_name,
            "recurrent_activation": self.recurrent_activation_name,
            "reset_after": self.reset_after,
        }

    def _gates_reset_after(self, projected_inputs, recurrent, h, recurrent_activation=None):
        """The elementwise part of a `reset_after=True` step, from both projections."""
        recurrent_activation = recurrent_activation or self.recurrent_activation
        x_z, x_r, x_h = tf.split(projected_inputs, 3, axis=-1)
        r_z, r_r, r_h = tf.split(recurrent, 3, axis=-1)
        z = recurrent_activation(x_z + r_z)
        r = recurrent_activation(x_r + r_r)
        candidate = self.activation(x_h + r * r_h)
        return z * h + (1.0 - z) * candidate

    def fast_loop_spec(self) -> Optional[FastLoopSpec]:
        if not self.reset_after:
            return None  # the reset gate multiplies h before its matmul: no such split

        recurrent_activation = fast_activation(
            self.recurrent_activation_name, self.recurrent_activation
        )

        def elementwise(pres, states):
            h = self._gates_reset_after(pres[0], pres[1], states[0], recurrent_activation)
            return h, [h]

        input_bias = recurrent_bias = None
        if self.bias is not None:
            input_bias, recurrent_bias = tf.unstack(self.read(self.bias))
        projections = (
            Projection(((INPUTS, self.read(self.kernel)),), input_bias),
            Projection(((STATE, self.read(self.recurrent_kernel)),), recurrent_bias),
        )
        act_vjp = output_vjp(self.activation_name)
        rec_vjp = output_vjp(self.recurrent_activation_name)
        if act_vjp is None or rec_vjp is None:
            return FastLoopSpec(projections, elementwise, output_state=0)

        # Unlike the LSTM, the GRU keeps its pre-activations, not its activated gates: the
        # forward pass would materialize them, and recomputing them here is cheap (keeping
        # them measured slower, docs/performance.md).
        def elementwise_vjp(pres, states, d_output, d_new_states):
            h = states[0]
            d_h = d_new_states[0] if d_output is None else d_output + d_new_states[0]
            x_z, x_r, x_h = tf.split(pres[0], 3, axis=-1)
            r_z, r_r, r_h = tf.split(pres[1], 3, axis=-1)
            z = recurrent_activation(x_z + r_z)
            r = recurrent_activation(x_r + r_r)
            candidate = self.activation(x_h + r * r_h)
            d_pre_z = rec_vjp(z, d_h * (h - candidate))
            d_pre_candidate = act_vjp(candidate, d_h - d_h * z)
            d_pre_r = rec_vjp(r, d_pre_candidate * r_h)
            d_inputs = tf.concat([d_pre_z, d_pre_r, d_pre_candidate], -1)
            d_recurrent = tf.concat([d_pre_z, d_pre_r, d_pre_candidate * r], -1)
            return [d_inputs, d_recurrent], [d_h * z]

        return FastLoopSpec(projections, elementwise, elementwise_vjp, output_state=0)

    def step(
        self,
        projected_inputs: tf.Tensor,
        states: list[tf.Tensor],
        dropout_masks: Optional[DropoutMasks] = None,
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One step from projected inputs: `(h, [h])`."""
        h = states[0]
        masks = dropout_masks[1] if dropout_masks else ()
        units = self.units
        recurrent_kernel = self.read(self.recurrent_kernel)
        if self.reset_after:
            recurrent = gated_recurrent_matmul(h, recurrent_kernel, 3, masks)
            if self.bias is not None:
                recurrent = recurrent + self.read(self.bias)[1]
            new_h = self._gates_reset_after(projected_inputs, recurrent, h)
            return new_h, [new_h]
        x_z, x_r, x_h = tf.split(projected_inputs, 3, axis=-1)
        h_h = h
        if len(masks) == 3:
            recurrent_zr = gated_recurrent_matmul(
                h, recurrent_kernel[:, : 2 * units], 2, masks[:2]
            )
            h_h = h * masks[2]
        else:
            if masks:
                h_h = h * masks[0]
            recurrent_zr = tf.matmul(h_h, recurrent_kernel[:, : 2 * units])
        r_z, r_r = tf.split(recurrent_zr, 2, axis=-1)
        z = self.recurrent_activation(x_z + r_z)
        r = self.recurrent_activation(x_r + r_r)
        candidate = self.activation(x_h + tf.matmul(r * h_h, recurrent_kernel[:, 2 * units :]))
        new_h = z * h + (1.0 - z) * candidate
        return new_h, [new_h]
