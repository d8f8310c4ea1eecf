"""The ConvLSTM cells the Keras adapters' `ConvLSTM1D`/`2D`/`3D` layers run.

A ConvLSTM state's shape depends on the inputs' spatial shape, which a Keras layer learns
only in `build()`. The core's `ConvLSTM*DCell`s refuse to go into a `tfrnn.RNN` unbuilt (so
a user learns at once that they need `input_shape=`); the adapters' cells instead report no
`state_size` until they are built, which the core accepts from cells that set it in
`build()`, as tf-keras cells may.
"""

from __future__ import annotations

from typing import Any, Optional

from tfrnn.conv_lstm_cell import ConvLSTM1DCell, ConvLSTM2DCell, ConvLSTM3DCell, conv_output_length

# What a ConvLSTM namesake passes to its cell, besides the LSTM cell arguments.
CONV_ARGUMENTS = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate")


class _BuiltByLayer:
    """Mixin: no `state_size`/`output_size` until built (the layer builds the cell)."""

    @property
    def state_size(self) -> Optional[list]:
        return None if self._state_shape is None else super().state_size

    @property
    def output_size(self) -> Any:
        return None if self._state_shape is None else super().output_size

    def state_shape_for(self, input_shape: Any) -> list:
        """`[*out_spatial, filters]` for one step's `input_shape` `[batch, *spatial, channels]`.

        Computed without building, for `compute_output_shape` on an unbuilt layer.
        """
        spatial = list(input_shape)[1:-1]
        out = [
            None if n is None else conv_output_length(n, k, self.padding, s, d)
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
