"""`LSTMCell`: Keras' LSTM cell (gate order i, f, c, o), with the input projection split out."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import tensorflow as tf

from tfrnn._core import activations
from tfrnn._core import initializers
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


def lstm_step(
    projected_inputs: tf.Tensor,
    h: tf.Tensor,
    c: tf.Tensor,
    recurrent_kernel: tf.Tensor,
    activation: Callable[[tf.Tensor], tf.Tensor],
    recurrent_activation: Callable[[tf.Tensor], tf.Tensor],
    recurrent_masks: Sequence[tf.Tensor] = (),
) -> tuple[tf.Tensor, tf.Tensor]:
    """One LSTM step from the projected inputs `x @ kernel + bias` `[batch, 4 * units]`.

    Returns the new `(h, c)`.
    """
    z = projected_inputs + gated_recurrent_matmul(h, recurrent_kernel, 4, recurrent_masks)
    return lstm_gates(z, c, activation, recurrent_activation)


def lstm_gates(
    z: tf.Tensor,
    c: tf.Tensor,
    activation: Callable[[tf.Tensor], tf.Tensor],
    recurrent_activation: Callable[[tf.Tensor], tf.Tensor],
) -> tuple[tf.Tensor, tf.Tensor]:
    """The elementwise part of a step, from all pre-activations `z` `[batch, 4 * units]`."""
    z_i, z_f, z_c, z_o = tf.split(z, 4, axis=-1)
    i = recurrent_activation(z_i)
    f = recurrent_activation(z_f)
    c = f * c + i * activation(z_c)
    o = recurrent_activation(z_o)
    return o * activation(c), c


def lstm_gates_saving(
    z: tf.Tensor,
    c: tf.Tensor,
    activation: Callable[[tf.Tensor], tf.Tensor],
    recurrent_activation: Callable[[tf.Tensor], tf.Tensor],
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """`lstm_gates`, and the activated gates `[i, f, g, o]` `[batch, 4 * units]` it used."""
    z_i, z_f, z_c, z_o = tf.split(z, 4, axis=-1)
    i = recurrent_activation(z_i)
    f = recurrent_activation(z_f)
    g = activation(z_c)
    o = recurrent_activation(z_o)
    c = f * c + i * g
    return o * activation(c), c, tf.concat([i, f, g, o], -1)


def forget_bias_initial_value(initializer, units: int, dtype, rng) -> tf.Tensor:
    """An LSTM bias `[4 * units]` with `unit_forget_bias`: the forget gate's block is ones."""
    return tf.concat(
        [
            initializers.initial_value(initializer, [units], dtype, rng),
            tf.ones([units], dtype),
            initializers.initial_value(initializer, [2 * units], dtype, rng),
        ],
        0,
    )


def lstm_gates_vjp(gates, c_prev, d_h, d_c, activation, act_vjp, rec_vjp):
    """The VJP of `lstm_gates` from the activated gates `[i, f, g, o]` (`lstm_gates_saving`).

    Returns `(d_z, d_c_prev)` from the gradients of the new h and c; only `activation(c)` is
    recomputed. `act_vjp`/`rec_vjp` are the activations' VJPs as functions of their outputs
    (`builtin_cell.output_vjp`).
    """
    i, f, g, o = tf.split(gates, 4, axis=-1)
    activated_c = activation(f * c_prev + i * g)
    d_c = d_c + act_vjp(activated_c, d_h * o)
    d_z = tf.concat(
        [rec_vjp(i, d_c * g), rec_vjp(f, d_c * c_prev), act_vjp(g, d_c * i), rec_vjp(o, d_h * activated_c)],
        -1,
    )
    return d_z, d_c * f


class LSTMCell(BuiltinCell):
    """Long short-term memory cell with Keras' weights, gate order and options.

    For inputs `x` `[batch, features]` and states `h`, `c` `[batch, units]`::

        z = x @ kernel + h @ recurrent_kernel + bias          # [batch, 4 * units]
        z_i, z_f, z_c, z_o = split(z, 4)                      # gate order i, f, c, o
        c' = recurrent_activation(z_f) * c + recurrent_activation(z_i) * activation(z_c)
        h' = recurrent_activation(z_o) * activation(c')

    Weights (Keras layout, copy one-to-one from `tf_keras.layers.LSTMCell`):
    `kernel [features, 4 * units]`, `recurrent_kernel [units, 4 * units]`,
    `bias [4 * units]`. `state_size = [units, units]` (h, c); the output is h.

    With `projection_units=P` (PyTorch's `nn.LSTM(proj_size=P)`, TFLite's LSTM projection)
    h is projected: `h' = (recurrent_activation(z_o) * activation(c')) @ projection_kernel`,
    with `projection_kernel [units, P]` after the other weights and `recurrent_kernel
    [P, 4 * units]`; `state_size = [P, units]` (h, c) and the output is h `[batch, P]`.
    From PyTorch: `kernel = weight_ih.T`, `recurrent_kernel = weight_hh.T`,
    `bias = bias_ih + bias_hh`, `projection_kernel = weight_hr.T`. A projected LSTM runs
    on the generic loop, not the fast loop, and never becomes TFLite's fused LSTM op.

    Dropout follows tf-keras: one mask per sequence; with `recurrent_dropout > 0` every gate
    has its own input and recurrent mask (tf-keras' implementation 1), otherwise one input
    mask serves all gates.

    >>> rnn = tfrnn.RNN(tfrnn.LSTMCell(16), return_state=True)
    >>> output, h, c = rnn(tf.ones([2, 7, 4]))
    >>> c.shape
    TensorShape([2, 16])

    Args:
      units: size of h and c.
      activation: for the candidate and the output (default tanh).
      recurrent_activation: for the gates (default sigmoid).
      unit_forget_bias: initialize the forget-gate bias to 1 (Keras' default).
      projection_units: the size of the projected h (a positive int), or `None` for none.
      projection_initializer, projection_regularizer, projection_constraint: for
        `projection_kernel`, as the other weights' (default glorot_uniform).
      **kwargs: `use_bias`, the `*_initializer`, `*_regularizer` (callables
        `variable -> scalar`, summed by `regularization_losses()`), `*_constraint` (set as the
        variables' `constraint`), `dropout`, `recurrent_dropout`, `seed`, `dtype`, `name`;
        see `BuiltinCell`.
    """

    gates = 4

    def __init__(
        self,
        units: int,
        activation: activations.Activation = "tanh",
        recurrent_activation: activations.Activation = "sigmoid",
        unit_forget_bias: bool = True,
        projection_units: Optional[int] = None,
        projection_initializer: initializers.Initializer = "glorot_uniform",
        projection_regularizer=None,
        projection_constraint=None,
        **kwargs,
    ):
        super().__init__(units, **kwargs)
        self.set_activations(activation, recurrent_activation)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.projection_units = _check_projection_units(projection_units)
        self.projection_initializer = initializers.check(
            projection_initializer, "projection_initializer"
        )
        self.projection_regularizer = projection_regularizer
        self.projection_constraint = projection_constraint
        self.projection_kernel: Optional[tf.Variable] = None
        self.state_size = [self.recurrent_size(), self.units]
        self.output_size = self.recurrent_size()
        self.state_names = ["h", "c"]

    def recurrent_size(self) -> int:
        """The size of h: `projection_units` when projected, else `units`."""
        return self.units if self.projection_units is None else self.projection_units

    def build(self, input_shape) -> None:
        super().build(input_shape)
        if self.projection_units is not None:
            self.projection_kernel = self.add_weight(
                "projection_kernel",
                [self.units, self.projection_units],
                self.projection_initializer,
                regularizer=self.projection_regularizer,
                constraint=self.projection_constraint,
            )

    def bias_initial_value(self, shape, dtype=None) -> tf.Tensor:
        if not self.unit_forget_bias:
            return super().bias_initial_value(shape, dtype)
        return forget_bias_initial_value(self.bias_initializer, self.units, dtype, self.rng)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "activation": self.activation_name,
            "recurrent_activation": self.recurrent_activation_name,
            "unit_forget_bias": self.unit_forget_bias,
            "projection_units": self.projection_units,
            "projection_initializer": self.projection_initializer,
            "projection_regularizer": self.projection_regularizer,
            "projection_constraint": self.projection_constraint,
        }

    def fast_loop_spec(self) -> Optional[FastLoopSpec]:
        if self.projection_units is not None:
            # The projection is a matmul after the gates, which the fast loop's elementwise
            # part cannot hold; docs/performance.md has what the generic loop costs instead.
            return None
        recurrent_activation = fast_activation(
            self.recurrent_activation_name, self.recurrent_activation
        )

        def elementwise(pres, states):
            h, c = lstm_gates(pres[0], states[1], self.activation, recurrent_activation)
            return h, [h, c]

        terms = ((INPUTS, self.read(self.kernel)), (STATE, self.read(self.recurrent_kernel)))
        projections = (Projection(terms, self.read(self.bias)),)
        act_vjp = output_vjp(self.activation_name)
        rec_vjp = output_vjp(self.recurrent_activation_name)
        if act_vjp is None or rec_vjp is None:
            return FastLoopSpec(projections, elementwise, output_state=0)

        def elementwise_saving(pres, states):
            h, c, gates = lstm_gates_saving(pres[0], states[1], self.activation, recurrent_activation)
            return h, [h, c], gates

        def saved_vjp(gates, states, d_output, d_new_states):
            d_h = d_new_states[0] if d_output is None else d_output + d_new_states[0]
            d_z, d_c_prev = lstm_gates_vjp(
                gates, states[1], d_h, d_new_states[1], self.activation, act_vjp, rec_vjp
            )
            return [d_z], [None, d_c_prev]

        return FastLoopSpec(
            projections,
            elementwise,
            elementwise_saving=elementwise_saving,
            saved_width=4 * self.units,
            saved_vjp=saved_vjp,
            output_state=0,
        )

    def step(
        self,
        projected_inputs: tf.Tensor,
        states: list[tf.Tensor],
        dropout_masks: Optional[DropoutMasks] = None,
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One step from projected inputs: `(h, [h, c])`."""
        h, c = lstm_step(
            projected_inputs,
            states[0],
            states[1],
            self.read(self.recurrent_kernel),
            self.activation,
            self.recurrent_activation,
            dropout_masks[1] if dropout_masks else (),
        )
        if self.projection_kernel is not None:
            h = tf.matmul(h, self.read(self.projection_kernel))
        return h, [h, c]


def _check_projection_units(projection_units) -> Optional[int]:
    if projection_units is None:
        return None
    if isinstance(projection_units, bool) or not isinstance(projection_units, int) or projection_units <= 0:
        raise ValueError(f"projection_units must be a positive int or None, got {projection_units!r}")
    return projection_units
