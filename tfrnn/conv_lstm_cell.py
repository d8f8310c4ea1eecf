"""`ConvLSTMCell` (and `ConvLSTM1DCell`/`2D`/`3D`): Keras' convolutional LSTM cells.

The gates are an LSTM's (order i, f, c, o), with convolutions in place of the matmuls: the
inputs `[batch, *spatial, channels]` go through `kernel` with the cell's `strides`,
`padding` and `dilation_rate`, the state h `[batch, *out_spatial, filters]` through
`recurrent_kernel` with stride 1 and `"same"` padding, as in Keras. Like the other built-in
cells, the input convolution of a whole sequence runs once before the time loop.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import tensorflow as tf

from tfrnn._core import activations
from tfrnn._core.builtin_cell import BuiltinCell, DropoutMasks, broadcast_mask, check_units
from tfrnn.lstm_cell import forget_bias_initial_value, lstm_gates

_SPATIAL_NAMES = {1: "steps", 2: "rows, cols", 3: "conv_dim1, conv_dim2, conv_dim3"}


def _int_tuple(value: Any, rank: int, argument: str) -> tuple[int, ...]:
    """An int or `rank` ints as a tuple of positive ints, as Keras normalizes them."""
    values = (value,) * rank if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        values = tuple(values)
    except TypeError:
        values = None
    if (
        values is None
        or len(values) != rank
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)
    ):
        raise ValueError(f"{argument} must be a positive int or {rank} positive ints, got {value!r}")
    return values


def _check_padding(padding: Any) -> str:
    normalized = padding.lower() if isinstance(padding, str) else padding
    if normalized not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same' (as in Keras' ConvLSTM), got {padding!r}")
    return normalized


def _check_data_format(data_format: Any) -> str:
    if data_format in (None, "channels_last"):
        return "channels_last"
    if data_format == "channels_first":
        raise ValueError(
            "data_format='channels_first' is not supported: tfrnn's ConvLSTM cells take "
            "channels-last inputs [batch, time, *spatial, channels] (what XLA:CPU and TFLite's "
            "CONV_2D run); transpose the inputs, or use data_format='channels_last'"
        )
    raise ValueError(f"data_format must be 'channels_last' (or None), got {data_format!r}")


def conv_output_length(length: int, kernel: int, padding: str, stride: int, dilation: int) -> int:
    """One spatial dimension after a convolution (Keras' `conv_output_length`)."""
    if padding == "same":
        return math.ceil(length / stride)
    return (length - (kernel - 1) * dilation - 1) // stride + 1


def convolve(
    inputs: tf.Tensor, kernel: tf.Tensor, rank: int, strides, padding: str, dilation_rate
) -> tf.Tensor:
    """`kernel` over `inputs` `[*leading, *spatial, channels]`, with any number of leading dims.

    A whole sequence `[batch, time, ...]` is one convolution of `batch * time` images.
    """
    inputs = tf.convert_to_tensor(inputs)
    leading = inputs.shape.rank - rank - 1
    padding = padding.upper()
    if rank == 3:
        # tf.nn.convolution would dilate a 3-D convolution with SpaceToBatchND, which TFLite
        # has no 5-D builtin for; Conv3D's own dilations become CONV_3D's.
        conv = lambda x: tf.nn.conv3d(  # noqa: E731
            x, kernel, [1, *strides, 1], padding, dilations=[1, *dilation_rate, 1]
        )
    else:
        op = tf.nn.conv1d if rank == 1 else tf.nn.conv2d
        conv = lambda x: op(x, kernel, list(strides), padding, dilations=list(dilation_rate))  # noqa: E731
    if leading == 1:
        return conv(inputs)
    # Static spatial dims and channels keep the images' shapes static (TFLite needs that).
    flat = tf.reshape(inputs, [-1] + inputs.shape[leading:].as_list())
    result = conv(flat)
    shape = tf.concat([tf.shape(inputs)[:leading], result.shape[1:].as_list()], 0)
    output = tf.reshape(result, shape)
    output.set_shape(inputs.shape[:leading].concatenate(result.shape[1:]))
    return output


class ConvLSTMCell(BuiltinCell):
    """Keras' convolutional LSTM cell for `rank` (1, 2 or 3) spatial dimensions.

    For inputs `x` `[batch, *spatial, channels]` and states h, c `[batch, *out_spatial,
    filters]` (`*` a convolution, `out_spatial` the input convolution's output size)::

        z = x * kernel + h * recurrent_kernel + bias    # [batch, *out_spatial, 4 * filters]
        then an LSTM's gates on z (order i, f, c, o), elementwise

    Weights (Keras layout, copy one-to-one from `keras.layers.ConvLSTM2D` and
    `tf_keras.layers.ConvLSTM2D`): `kernel [*kernel_size, channels, 4 * filters]`,
    `recurrent_kernel [*kernel_size, filters, 4 * filters]`, `bias [4 * filters]`.

    The states' shape depends on the inputs' spatial shape, and an RNN needs it when it is
    created: give the cell `input_shape=[*spatial, channels]` (it builds at once) or build
    it before passing it to `tfrnn.RNN`.

    >>> cell = tfrnn.ConvLSTM2DCell(3, 3, padding="same", input_shape=[4, 4, 2])
    >>> outputs, h, c = tfrnn.RNN(cell, return_sequences=True, return_state=True)(
    ...     tf.ones([2, 5, 4, 4, 2]))
    >>> outputs.shape, c.shape
    (TensorShape([2, 5, 4, 4, 3]), TensorShape([2, 4, 4, 3]))

    Args:
      rank: the number of spatial dimensions (1, 2 or 3).
      filters: the channels of h and c.
      kernel_size: an int or `rank` ints; both kernels' window.
      strides: an int or `rank` ints, of the input convolution (the recurrent one has 1).
      padding: `"valid"` or `"same"` for the input convolution (the recurrent one is same).
      data_format: `"channels_last"` (or `None`); `"channels_first"` is refused.
      dilation_rate: an int or `rank` ints, of the input convolution; not with strides > 1.
      activation, recurrent_activation, unit_forget_bias: as for `tfrnn.LSTMCell`.
      input_shape: `[*spatial, channels]` of one step's inputs: builds the cell now.
      **kwargs: `use_bias`, the `*_initializer`, `*_regularizer`, `*_constraint`, `dropout`,
        `recurrent_dropout`, `seed`, `dtype`, `compute_dtype`, `name`; see `BuiltinCell`.
        Dropout masks have the shape of the inputs (or of h) without the time axis.
    """

    gates = 4

    def __init__(
        self,
        rank: int,
        filters: int,
        kernel_size: Any,
        strides: Any = 1,
        padding: str = "valid",
        data_format: Optional[str] = None,
        dilation_rate: Any = 1,
        activation: activations.Activation = "tanh",
        recurrent_activation: activations.Activation = "sigmoid",
        unit_forget_bias: bool = True,
        input_shape: Optional[Sequence[int]] = None,
        **kwargs,
    ):
        if rank not in (1, 2, 3):
            raise ValueError(f"rank must be 1, 2 or 3 (spatial dimensions), got {rank!r}")
        try:
            check_units(filters)
        except ValueError:
            raise ValueError(f"filters must be a positive int, got {filters!r}") from None
        self.rank = rank
        self.filters = filters
        self.kernel_size = _int_tuple(kernel_size, rank, "kernel_size")
        self.strides = _int_tuple(strides, rank, "strides")
        self.padding = _check_padding(padding)
        self.data_format = _check_data_format(data_format)
        self.dilation_rate = _int_tuple(dilation_rate, rank, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                "strides > 1 is not compatible with dilation_rate > 1 (as in Keras), got "
                f"strides={self.strides} and dilation_rate={self.dilation_rate}"
            )
        super().__init__(filters, **kwargs)
        self.activation_name = activations.name_of(activation)
        self.recurrent_activation_name = activations.name_of(recurrent_activation)
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.state_names = ["h", "c"]
        self._state_shape: Optional[list[int]] = None
        if input_shape is not None:
            self.build([None] + list(input_shape))

    # -- shapes ------------------------------------------------------------------------------

    @property
    def state_size(self) -> list[list[int]]:
        """`[[*out_spatial, filters]] * 2` (h, c), known once the cell is built."""
        return [list(self._built_state_shape()), list(self._built_state_shape())]

    @property
    def output_size(self) -> tf.TensorShape:
        """h's shape `[*out_spatial, filters]` (a `TensorShape`: a list would be many states)."""
        return tf.TensorShape(self._built_state_shape())

    def _built_state_shape(self) -> list[int]:
        if self._state_shape is None:
            name = type(self).__name__
            raise ValueError(
                f"{name} {self.name!r} is not built, so its states' shape [{_SPATIAL_NAMES[self.rank]}"
                f" after the convolution, filters] is unknown; create it with input_shape="
                f"[{_SPATIAL_NAMES[self.rank]}, channels] or call cell.build([None, "
                f"{_SPATIAL_NAMES[self.rank]}, channels]) before passing it to tfrnn.RNN"
            )
        return self._state_shape

    def _check_step_rank(self, input_shape: tf.TensorShape) -> None:
        expected = self.rank + 2
        if input_shape.rank != expected:
            spatial = _SPATIAL_NAMES[self.rank]
            raise ValueError(
                f"{type(self).__name__} (rank {self.rank}) takes inputs [batch, time, {spatial}, "
                f"channels] (steps [batch, {spatial}, channels], rank {expected}), got steps of "
                f"shape {input_shape}"
            )

    def check_input_shape(self, input_shape: tf.TensorShape, argument: str) -> None:
        self._check_step_rank(tf.TensorShape(input_shape))
        super().check_input_shape(input_shape, argument)

    def build(self, input_shape) -> None:
        shape = tf.TensorShape(input_shape)
        self._check_step_rank(shape)
        spatial, channels = shape[1:-1].as_list(), int(shape[-1])
        out = [
            conv_output_length(n, k, self.padding, s, d)
            for n, k, s, d in zip(spatial, self.kernel_size, self.strides, self.dilation_rate)
        ]
        if min(out) < 1:
            raise ValueError(
                f"inputs of spatial shape {spatial} are too small for kernel_size "
                f"{self.kernel_size} with padding={self.padding!r} and dilation_rate "
                f"{self.dilation_rate}: the convolution's output would be {out}"
            )
        width = 4 * self.filters
        self.kernel = self.add_weight(
            "kernel",
            list(self.kernel_size) + [channels, width],
            self.kernel_initializer,
            regularizer=self.regularizers[0],
            constraint=self.constraints[0],
        )
        self.recurrent_kernel = self.add_weight(
            "recurrent_kernel",
            list(self.kernel_size) + [self.filters, width],
            self.recurrent_initializer,
            regularizer=self.regularizers[1],
            constraint=self.constraints[1],
        )
        if self.use_bias:
            self.bias = self.add_weight(
                "bias",
                [width],
                self.bias_initial_value,
                regularizer=self.regularizers[2],
                constraint=self.constraints[2],
            )
        self._state_shape = out + [self.filters]

    def bias_initial_value(self, shape, dtype=None) -> tf.Tensor:
        if not self.unit_forget_bias:
            return super().bias_initial_value(shape, dtype)
        return forget_bias_initial_value(self.bias_initializer, self.filters, dtype, self.rng)

    def get_config(self) -> dict[str, Any]:
        config = {k: v for k, v in super().get_config().items() if k != "units"}
        built_shape = self.input_shape[1:].as_list() if self.built else None
        return {
            "rank": self.rank,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "activation": self.activation_name,
            "recurrent_activation": self.recurrent_activation_name,
            "unit_forget_bias": self.unit_forget_bias,
            "input_shape": built_shape,
            **config,
        }

    # -- the recurrence ----------------------------------------------------------------------

    def _input_conv(self, inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        return convolve(inputs, kernel, self.rank, self.strides, self.padding, self.dilation_rate)

    def project_inputs(
        self, inputs: tf.Tensor, dropout_masks: Optional[DropoutMasks] = None
    ) -> tf.Tensor:
        """`inputs * kernel + bias`: `[..., *spatial, channels] -> [..., *out_spatial, 4 * filters]`.

        `inputs` is one step `[batch, ...]` or a whole sequence `[batch, time, ...]`.
        """
        kernel = self.read(self.kernel)
        masks = dropout_masks[0] if dropout_masks else []
        if len(masks) == self.gates:
            kernels = tf.split(kernel, self.gates, axis=-1)
            projected = tf.concat(
                [
                    self._input_conv(inputs * broadcast_mask(mask, inputs), gate_kernel)
                    for mask, gate_kernel in zip(masks, kernels)
                ],
                -1,
            )
        else:
            if masks:
                inputs = inputs * broadcast_mask(masks[0], inputs)
            projected = self._input_conv(inputs, kernel)
        bias = self.read(self.bias)
        return projected if bias is None else projected + bias

    def _recurrent_conv(self, h: tf.Tensor, masks: Sequence[tf.Tensor]) -> tf.Tensor:
        kernel = self.read(self.recurrent_kernel)
        ones = (1,) * self.rank
        if len(masks) == self.gates:
            kernels = tf.split(kernel, self.gates, axis=-1)
            return tf.concat(
                [convolve(h * m, k, self.rank, ones, "same", ones) for m, k in zip(masks, kernels)],
                -1,
            )
        if masks:
            h = h * masks[0]
        return convolve(h, kernel, self.rank, ones, "same", ones)

    def step(
        self,
        projected_inputs: tf.Tensor,
        states: list[tf.Tensor],
        dropout_masks: Optional[DropoutMasks] = None,
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One step from projected inputs: `(h, [h, c])`."""
        recurrent_masks = dropout_masks[1] if dropout_masks else ()
        h, c = (tf.convert_to_tensor(s, self.compute_dtype) for s in states)
        z = projected_inputs + self._recurrent_conv(h, recurrent_masks)
        h, c = lstm_gates(z, c, self.activation, self.recurrent_activation)
        return h, [h, c]


class _FixedRankCell(ConvLSTMCell):
    """A `ConvLSTMCell` whose class fixes the rank (its config has no `rank`)."""

    fixed_rank = 0

    def __init__(self, filters: int, kernel_size: Any, **kwargs):
        super().__init__(self.fixed_rank, filters, kernel_size, **kwargs)

    def get_config(self) -> dict[str, Any]:
        return {k: v for k, v in super().get_config().items() if k != "rank"}


class ConvLSTM1DCell(_FixedRankCell):
    """`ConvLSTMCell` over one spatial dimension: steps `[batch, steps, channels]`.

    >>> cell = tfrnn.ConvLSTM1DCell(3, 2, input_shape=[6, 2])
    >>> tfrnn.RNN(cell)(tf.ones([2, 4, 6, 2])).shape
    TensorShape([2, 5, 3])

    Args: those of `ConvLSTMCell` without `rank`.
    """

    fixed_rank = 1


class ConvLSTM2DCell(_FixedRankCell):
    """`ConvLSTMCell` over two spatial dimensions: steps `[batch, rows, cols, channels]`.

    >>> cell = tfrnn.ConvLSTM2DCell(3, (2, 2), strides=2, input_shape=[4, 4, 2])
    >>> tfrnn.RNN(cell)(tf.ones([2, 4, 4, 4, 2])).shape
    TensorShape([2, 2, 2, 3])

    Args: those of `ConvLSTMCell` without `rank`.
    """

    fixed_rank = 2


class ConvLSTM3DCell(_FixedRankCell):
    """`ConvLSTMCell` over three spatial dimensions: steps `[batch, d1, d2, d3, channels]`.

    >>> cell = tfrnn.ConvLSTM3DCell(3, 2, padding="same", input_shape=[3, 3, 3, 1])
    >>> tfrnn.RNN(cell)(tf.ones([2, 4, 3, 3, 3, 1])).shape
    TensorShape([2, 3, 3, 3, 3])

    Args: those of `ConvLSTMCell` without `rank`.
    """

    fixed_rank = 3
