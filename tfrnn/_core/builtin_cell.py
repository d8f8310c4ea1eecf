"""`BuiltinCell`: what tfrnn's SimpleRNN, LSTM and GRU cells share.

Keras' argument set (units, use_bias, initializers, regularizers, constraints, dropout), the
weight triple `kernel`/`recurrent_kernel`/`bias`, per-sequence dropout masks, and the split of
a step into an input projection (`project_inputs`, which also runs on a whole sequence as one
matmul before the time loop) and a recurrent part (`step`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import tensorflow as tf

from tfrnn._core import activations
from tfrnn._core import dropout as dropout_lib
from tfrnn._core import initializers
from tfrnn._core import state_spec
from tfrnn.cell import RNNCell

# Per-sequence dropout masks of a built-in cell: (input masks, recurrent masks), each a list.
DropoutMasks = tuple[list[tf.Tensor], list[tf.Tensor]]

INPUTS, STATE = "inputs", "state"


class Projection(NamedTuple):
    """One pre-activation: `sum(source @ kernel for source, kernel in terms) + bias`."""

    terms: tuple[tuple[str, Any], ...]
    """`(INPUTS or STATE, kernel)` pairs; STATE is the cell's first state (h)."""
    bias: Any


class FastLoopSpec(NamedTuple):
    """A step split into matmuls and elementwise math, for the fast loop (`_core.fast_loop`).

    The step is `pres = [projection(x_t, h) for projection in projections]`, then
    `output, new_states = elementwise(pres, prev_states)`, where `elementwise` has no
    matmul (so its VJP is cheap, and the matmul gradients can be batched over time).
    `elementwise_vjp(pres, prev_states, d_output, d_new_states) -> (d_pres, d_prev_states)`
    is its hand-written VJP where the cell has one (known activations); without it the
    fast loop differentiates `elementwise` with a local `GradientTape`.

    A cell may instead have the forward pass keep its gate activations, so that the backward
    pass need not recompute them: `elementwise_saving(pres, prev_states) -> (output,
    new_states, saved)` is `elementwise` that also returns them, one `[batch, saved_width]`
    tensor per step (computed once, also without XLA to merge two computations), and
    `saved_vjp(saved, prev_states, d_output, d_new_states) -> (d_pres, d_prev_states)`
    differentiates from it. In both VJPs `d_output` and entries of `d_prev_states` may be
    `None` for zeros. `output_state` is the index of the state the output always equals
    (h), if any: the loop then does not carry the output separately.
    """

    projections: tuple[Projection, ...]
    elementwise: Callable[[list, list], tuple[tf.Tensor, list]]
    elementwise_vjp: Optional[Callable[[list, list, tf.Tensor, list], tuple[list, list]]] = None
    elementwise_saving: Optional[Callable[[list, list], tuple[tf.Tensor, list, tf.Tensor]]] = None
    saved_width: Optional[int] = None
    saved_vjp: Optional[Callable[[list, list, Optional[tf.Tensor], list], tuple[list, list]]] = None
    output_state: Optional[int] = None


# `(y, dy) -> dy * activation'(x)` as a function of y = activation(x): the fast loop's backward
# pass keeps the activated gates, not their inputs. tanh, sigmoid and relu use TensorFlow's
# fused gradient ops: one op each where the plain TensorFlow path would run two or three (XLA
# compiles both to the same code). (y > 0 iff x > 0 for relu; 0 < y < 1 iff |x| < 2.5 for
# tf-keras' hard_sigmoid.)
_OUTPUT_VJPS: dict[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {
    "tanh": lambda y, dy: tf.raw_ops.TanhGrad(y=y, dy=dy),
    "sigmoid": lambda y, dy: tf.raw_ops.SigmoidGrad(y=y, dy=dy),
    "linear": lambda y, dy: dy,
    "relu": lambda y, dy: tf.raw_ops.ReluGrad(gradients=dy, features=y),
    "hard_sigmoid": lambda y, dy: dy * tf.cast((y > 0.0) & (y < 1.0), y.dtype) * 0.2,
}


def output_vjp(name: Any) -> Optional[Callable[[tf.Tensor, tf.Tensor], tf.Tensor]]:
    """`(y, dy) -> dy * activation'(x)` for an activation given by Keras name, else `None`."""
    return _OUTPUT_VJPS.get(name) if isinstance(name, str) else None


def in_xla_context() -> bool:
    """Whether the code being traced will be compiled by XLA (a `jit_compile` function)."""
    try:
        from tensorflow.python.ops import control_flow_util  # no public equivalent
    except ImportError:  # pragma: no cover - a TensorFlow without it: assume not
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def _tanh_sigmoid(x: tf.Tensor) -> tf.Tensor:
    return 0.5 * tf.tanh(0.5 * x) + 0.5


def fast_activation(name: Any, activation: Callable[[tf.Tensor], tf.Tensor]):
    """The activation for the fast loop's gate math.

    Under XLA, `sigmoid` becomes `0.5 * tanh(x / 2) + 0.5`: XLA:CPU emits sigmoid as
    `1 / (1 + exp(-x))`, an exp and a divide, and its tanh is cheaper (docs/performance.md).
    The values agree to 1.5e-7 (tf.sigmoid's own error is 1.4e-7). The plain TensorFlow
    path keeps the single sigmoid op (one op instead of four per gate). Decided where the
    cell builds its `FastLoopSpec`: the native loop's compiled steps, traced for XLA inside a
    graph that is not, keep sigmoid (the tanh form measured no faster there).
    """
    if name == "sigmoid" and in_xla_context():
        return _tanh_sigmoid
    return activation


def dense(inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """`inputs [..., in] @ kernel [in, out]` as one 2-D matmul, for any number of leading dims."""
    if inputs.shape.rank == 2:
        return tf.matmul(inputs, kernel)
    leading = tf.shape(inputs)[:-1]
    flat = tf.matmul(tf.reshape(inputs, [-1, tf.shape(inputs)[-1]]), kernel)
    result = tf.reshape(flat, tf.concat([leading, tf.shape(kernel)[-1:]], 0))
    result.set_shape(inputs.shape[:-1].concatenate(kernel.shape[-1:]))
    return result


def broadcast_mask(mask: tf.Tensor, inputs: tf.Tensor) -> tf.Tensor:
    """A per-sequence mask `[batch, features]` shaped to multiply `[batch, ..., features]`."""
    extra = inputs.shape.rank - mask.shape.rank
    if extra <= 0:
        return mask
    return tf.reshape(mask, tf.concat([tf.shape(mask)[:1], [1] * extra, tf.shape(mask)[1:]], 0))


def project_gates(
    inputs: tf.Tensor,
    kernel: tf.Tensor,
    bias: Optional[tf.Tensor],
    gates: int,
    input_masks: Sequence[tf.Tensor] = (),
) -> tf.Tensor:
    """`inputs @ kernel + bias` for all gates, `[..., features] -> [..., gates * units]`.

    `inputs` may hold one step `[batch, features]` or a whole sequence
    `[batch, time, features]`: the per-sequence masks broadcast over time, so the projection
    of a whole sequence is one matmul outside the time loop. With one input mask per gate
    (tf-keras' implementation 1), gate `g` sees `inputs * mask_g`.
    """
    if gates > 1 and len(input_masks) == gates:
        kernels = tf.split(kernel, gates, axis=1)
        projected = tf.concat(
            [
                dense(inputs * broadcast_mask(mask, inputs), gate_kernel)
                for mask, gate_kernel in zip(input_masks, kernels)
            ],
            -1,
        )
    else:
        if input_masks:
            inputs = inputs * broadcast_mask(input_masks[0], inputs)
        projected = dense(inputs, kernel)
    if bias is not None:
        projected = projected + bias
    return projected


def gated_recurrent_matmul(
    h: tf.Tensor, recurrent_kernel: tf.Tensor, gates: int, masks: Sequence[tf.Tensor] = ()
) -> tf.Tensor:
    """`h @ recurrent_kernel`, with gate `g`'s block seeing `h * masks[g]` under dropout."""
    if gates > 1 and len(masks) == gates:
        kernels = tf.split(recurrent_kernel, gates, axis=1)
        return tf.concat([tf.matmul(h * mask, kernel) for mask, kernel in zip(masks, kernels)], -1)
    if masks:
        h = h * masks[0]
    return tf.matmul(h, recurrent_kernel)


def check_units(units: Any) -> int:
    """Validates a cell's `units` argument."""
    if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
        raise ValueError(f"units must be a positive int, got {units!r}")
    return units


class BuiltinCell(RNNCell):
    """Base of tfrnn's Keras-family cells; see the module docstring.

    Subclasses set `gates` (how many `units`-wide blocks the kernels hold), `bias_shape`,
    and implement `step(projected_inputs, states, dropout_masks)`.
    """

    gates = 1

    def __init__(
        self,
        units: int,
        *,
        use_bias: bool = True,
        kernel_initializer: initializers.Initializer = "glorot_uniform",
        recurrent_initializer: initializers.Initializer = "orthogonal",
        bias_initializer: initializers.Initializer = "zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: Optional[int] = None,
        dtype: tf.DType | str = tf.float32,
        compute_dtype: tf.DType | str | None = None,
        name: Optional[str] = None,
    ):
        super().__init__(seed=seed, dtype=dtype, compute_dtype=compute_dtype, name=name)
        self.units = check_units(units)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.check(kernel_initializer, "kernel_initializer")
        self.recurrent_initializer = initializers.check(
            recurrent_initializer, "recurrent_initializer"
        )
        self.bias_initializer = initializers.check(bias_initializer, "bias_initializer")
        self.regularizers = (kernel_regularizer, recurrent_regularizer, bias_regularizer)
        self.constraints = (kernel_constraint, recurrent_constraint, bias_constraint)
        self.dropout = dropout_lib.check_rate(dropout, "dropout")
        self.recurrent_dropout = dropout_lib.check_rate(recurrent_dropout, "recurrent_dropout")
        self.kernel: Optional[tf.Variable] = None
        self.recurrent_kernel: Optional[tf.Variable] = None
        self.bias: Optional[tf.Variable] = None

    def set_activations(self, activation: Any, recurrent_activation: Any = None) -> None:
        """Sets `activation` (and `recurrent_activation`) and their serializable names."""
        self.activation_name = activations.name_of(activation)
        self.activation = activations.get(activation)
        if recurrent_activation is not None:
            self.recurrent_activation_name = activations.name_of(recurrent_activation)
            self.recurrent_activation = activations.get(recurrent_activation)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments; `type(cell).from_config(cell.get_config())` rebuilds it.

        Activations and initializers given by Keras name stay names; callables stay the
        callables (a serializer such as the Keras adapter's turns them into configs).
        """
        return {
            "units": self.units,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            "recurrent_initializer": self.recurrent_initializer,
            "bias_initializer": self.bias_initializer,
            "kernel_regularizer": self.regularizers[0],
            "recurrent_regularizer": self.regularizers[1],
            "bias_regularizer": self.regularizers[2],
            "kernel_constraint": self.constraints[0],
            "recurrent_constraint": self.constraints[1],
            "bias_constraint": self.constraints[2],
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
            "dtype": self.dtype.name,
            "compute_dtype": self.compute_dtype.name,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "BuiltinCell":
        return cls(**config)

    # -- weights -----------------------------------------------------------------------------

    def bias_shape(self) -> list[int]:
        return [self.gates * self.units]

    def bias_initial_value(self, shape, dtype=None) -> tf.Tensor:
        """The bias' initial value; the LSTM overrides it for `unit_forget_bias`."""
        return initializers.initial_value(self.bias_initializer, shape, dtype, self.rng)

    def recurrent_size(self) -> int:
        """The width of the state the recurrent kernel reads (h); the projected LSTM's is smaller."""
        return self.units

    def build(self, input_shape) -> None:
        features = int(input_shape[-1])
        width = self.gates * self.units
        self.kernel = self.add_weight(
            "kernel",
            [features, width],
            self.kernel_initializer,
            regularizer=self.regularizers[0],
            constraint=self.constraints[0],
        )
        self.recurrent_kernel = self.add_weight(
            "recurrent_kernel",
            [self.recurrent_size(), width],
            self.recurrent_initializer,
            regularizer=self.regularizers[1],
            constraint=self.constraints[1],
        )
        if self.use_bias:
            self.bias = self.add_weight(
                "bias",
                self.bias_shape(),
                self.bias_initial_value,
                regularizer=self.regularizers[2],
                constraint=self.constraints[2],
            )

    # -- dropout -----------------------------------------------------------------------------

    def dropout_mask_counts(self) -> tuple[int, int]:
        """How many input and recurrent masks a step uses.

        tf-keras switches to its implementation 1 whenever `recurrent_dropout > 0`, which
        draws one mask per gate on both sides; otherwise one input mask serves all gates.
        """
        if self.recurrent_dropout > 0.0:
            return self.gates, self.gates
        return 1, 1

    def uses_dropout(self, training: bool) -> bool:
        return bool(training) and (self.dropout > 0.0 or self.recurrent_dropout > 0.0)

    def get_dropout_masks(
        self, batch_size: Any, training: bool = False, seed: Optional[tf.Tensor] = None
    ) -> Optional[DropoutMasks]:
        """The masks for one sequence of `batch_size`, or `None` when no dropout applies.

        Args:
          batch_size: int or scalar tensor.
          training: dropout applies only when `True`.
          seed: `[2]` int tensor; `None` takes the next one from `seed_stream`.
        """
        if not self.uses_dropout(training):
            return None
        if not self.built:
            raise ValueError(f"{type(self).__name__} must be built before drawing dropout masks")
        if seed is None:
            seed = self.seed_stream.next()
        seed = tf.cast(seed, tf.int64)
        input_count, recurrent_count = self.dropout_mask_counts()
        feature_shape = self.input_shape[1:].as_list()
        state_shape = state_spec.flat_state_shapes(self.state_size)[0].as_list()
        input_masks, recurrent_masks = [], []
        if self.dropout > 0.0:
            input_masks = dropout_lib.dropout_masks(
                dropout_lib.fold_in(seed, 0),
                tf.concat([[batch_size], feature_shape], 0),
                self.dropout,
                self.compute_dtype,
                input_count,
            )
        if self.recurrent_dropout > 0.0:
            recurrent_masks = dropout_lib.dropout_masks(
                dropout_lib.fold_in(seed, 1),
                tf.concat([[batch_size], state_shape], 0),
                self.recurrent_dropout,
                self.compute_dtype,
                recurrent_count,
            )
        return input_masks, recurrent_masks

    # -- the recurrence ----------------------------------------------------------------------

    def input_bias(self) -> Optional[tf.Tensor]:
        """The part of the bias added to the input projection (GRU splits its bias)."""
        return self.read(self.bias)

    def project_inputs(
        self, inputs: tf.Tensor, dropout_masks: Optional[DropoutMasks] = None
    ) -> tf.Tensor:
        """`inputs @ kernel + input bias`: `[..., features] -> [..., gates * units]`."""
        input_masks = dropout_masks[0] if dropout_masks else []
        return project_gates(inputs, self.read(self.kernel), self.input_bias(), self.gates, input_masks)

    def step(
        self,
        projected_inputs: tf.Tensor,
        states: list[tf.Tensor],
        dropout_masks: Optional[DropoutMasks] = None,
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One step from projected inputs `[batch, gates * units]`."""
        raise TypeError(f"{type(self).__name__} must implement step()")

    def fast_loop_spec(self) -> Optional[FastLoopSpec]:
        """The step as matmuls + elementwise math, or `None` if it does not split so."""
        return None

    def fast_loop_ok(self, training: bool) -> bool:
        """Whether the fast loop can apply this call's dropout: no recurrent masks.

        Without `recurrent_dropout` a call draws at most one input mask, which the fast loop
        applies to the inputs before it runs; with it, per-gate masks on both sides.
        """
        return not (self.uses_dropout(training) and self.recurrent_dropout > 0.0)

    def apply_input_dropout(
        self, inputs: tf.Tensor, dropout_masks: Optional[DropoutMasks]
    ) -> tf.Tensor:
        """`inputs * mask` for the single per-sequence input mask (the fast loop's)."""
        if not dropout_masks or not dropout_masks[0]:
            return inputs
        return inputs * broadcast_mask(dropout_masks[0][0], inputs)

    def call(self, inputs, states, training=False, dropout_masks=None):
        if dropout_masks is None:
            dropout_masks = self.get_dropout_masks(tf.shape(inputs)[0], training)
        return self.step(self.project_inputs(inputs, dropout_masks), states, dropout_masks)
