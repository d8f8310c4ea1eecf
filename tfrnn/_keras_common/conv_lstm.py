"""The ConvLSTM cells the Keras adapters' `ConvLSTM1D`/`2D`/`3D` layers run, and their checks.

A ConvLSTM state's shape depends on the inputs' spatial shape, which a Keras layer learns
only in `build()`. The core's `ConvLSTM*DCell`s refuse to go into a `tfrnn.RNN` unbuilt (so
a user learns at once that they need `input_shape=`); the adapters' cells instead report no
`state_size` until they are built, which the core accepts from cells that set it in
`build()`, as tf-keras cells may.
"""

from __future__ import annotations

from typing import Any, Optional

import tensorflow as tf

from tfrnn.conv_lstm_cell import (
    _SPATIAL_NAMES,
    ConvLSTM1DCell,
    ConvLSTM2DCell,
    ConvLSTM3DCell,
    conv_output_length,
)

# What a ConvLSTM namesake passes to its cell, besides the LSTM cell arguments.
CONV_ARGUMENTS = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate")


def check_sequence_shape(sequences_shape: Any, rank: int, layer_name: str) -> tf.TensorShape:
    """`sequences_shape` as a `TensorShape`, checked for a `ConvLSTM{rank}D` layer.

    Raises:
      ValueError: not `[batch, timesteps, *spatial, channels]` of rank `rank + 3`, or the
        spatial sizes or channels are unknown (the states' shape depends on them, as in Keras).
    """
    shape = tf.TensorShape(sequences_shape)
    layout = f"[batch, timesteps, {_SPATIAL_NAMES[rank]}, channels]"
    received = None if shape.rank is None else tuple(shape.as_list())
    if shape.rank != rank + 3:
        raise ValueError(
            f"inputs of {layer_name} (ConvLSTM{rank}D) must have rank {rank + 3}, {layout}, "
            f"got shape {received}"
        )
    if None in shape[2:].as_list():
        raise ValueError(
            f"inputs of {layer_name} (ConvLSTM{rank}D) need known {_SPATIAL_NAMES[rank]} and "
            f"channels, {layout} (the states' shape depends on them, as in Keras), got shape "
            f"{received}"
        )
    return shape


def check_states_known(cell: Any, rank: int, layer_name: str) -> None:
    """Raises `ValueError` while `cell` (unbuilt) cannot say its states' shape.

    `reset_state(states=...)` before the first call fixes a stateful layer's batch size from
    the values given; a ConvLSTM's states' shape needs the inputs' spatial shape too.
    """
    if cell.state_size is None:
        raise ValueError(
            f"{layer_name} (ConvLSTM{rank}D) is not built yet, so the shape of its states, "
            f"[batch, {_SPATIAL_NAMES[rank]} after the convolution, filters], is unknown: build "
            "or call it first (inputs [batch, timesteps, "
            f"{_SPATIAL_NAMES[rank]}, channels]), then reset its states"
        )


class _BuiltByLayer:
    """Mixin: no `state_size`/`output_size` until built (the layer builds the cell)."""

    @property
    def state_size(self) -> Optional[list]:
        return None if self._state_shape is None else super().state_size

    @property
    def output_size(self) -> Any:
        return None if self._state_shape is None else super().output_size

    def state_shape_for(self, sequences_shape: tf.TensorShape) -> list:
        """`[*out_spatial, filters]` for inputs `[batch, timesteps, *spatial, channels]`.

        Computed without building, for `compute_output_shape` on an unbuilt layer.
        """
        spatial = sequences_shape[2:-1].as_list()
        out = [
            conv_output_length(n, k, self.padding, s, d)
            for n, k, s, d in zip(spatial, self.kernel_size, self.strides, self.dilation_rate)
        ]
        return out + [self.filters]


class LayerConvLSTM1DCell(_BuiltByLayer, ConvLSTM1DCell):
    """`tfrnn.ConvLSTM1DCell` built by its layer."""


class LayerConvLSTM2DCell(_BuiltByLayer, ConvLSTM2DCell):
    """`tfrnn.ConvLSTM2DCell` built by its layer."""


class LayerConvLSTM3DCell(_BuiltByLayer, ConvLSTM3DCell):
    """`tfrnn.ConvLSTM3DCell` built by its layer."""


CELLS = {1: LayerConvLSTM1DCell, 2: LayerConvLSTM2DCell, 3: LayerConvLSTM3DCell}
