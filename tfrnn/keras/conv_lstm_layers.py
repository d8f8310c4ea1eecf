"""`tfrnn.keras.ConvLSTM1D`, `ConvLSTM2D` and `ConvLSTM3D`: Keras 3's namesakes, run by tfrnn.

Each takes its Keras 3 twin's constructor arguments, builds the matching tfrnn ConvLSTM cell
once the inputs' spatial shape is known, and has the twin's weights (`kernel
[*kernel_size, channels, 4 * filters]`, `recurrent_kernel [*kernel_size, filters,
4 * filters]`, `bias [4 * filters]`), `.weights.h5` layout and config keys, so
`set_weights(keras_layer.get_weights())` copies a `keras.layers.ConvLSTM2D` and weight files
load both ways. Differences, each tested: `data_format="channels_first"` is refused (the
cells take channels-last inputs), `seed` also seeds the initial weights, `unroll` is in the
signature (Keras 3 takes it only through `**kwargs`), and `jit_compile` (the loop's XLA
compilation, as on `tfrnn.keras.RNN`) is accepted.
"""

from __future__ import annotations

from typing import Any, Optional

import tensorflow as tf

from tfrnn._keras_common import conv_lstm
from tfrnn.conv_lstm_cell import _SPATIAL_NAMES
from tfrnn.keras.builtin_layers import _BuiltinRNN
from tfrnn.keras.layers import register

__all__ = ["ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"]


class _ConvLSTM(_BuiltinRNN):
    """A Keras 3 ConvLSTM namesake; see the module docstring and `tfrnn.keras.RNN`."""

    rank = 0

    @property
    def _cell_class(self) -> type:
        return conv_lstm.CELLS[self.rank]

    def _sequence_shape(self, sequences_shape: Any) -> tf.TensorShape:
        return conv_lstm.check_sequence_shape(sequences_shape, self.rank, self.name)

    def reset_state(self, states: Any = None) -> None:
        """As `tfrnn.keras.RNN.reset_state`; `states` need the layer built (their shape)."""
        if self.stateful and states is not None:
            conv_lstm.check_states_known(self._core.cell, self.rank, self.name)
        super().reset_state(states)

    def compute_output_shape(self, sequences_shape, initial_state_shape=None, constants_shape=None):
        """Static output shape(s), also before the layer is built (as Keras 3's)."""
        shape = self._sequence_shape(sequences_shape)
        state = tuple(self._core.cell.state_shape_for(shape))
        batch, time = shape[0], shape[1]
        output = ((batch, time) if self.return_sequences else (batch,)) + state
        return (output, (batch,) + state, (batch,) + state) if self.return_state else output


for _name in conv_lstm.CONV_ARGUMENTS:
    setattr(_ConvLSTM, _name, property(lambda self, name=_name: getattr(self._core.cell, name)))


def _namesake(rank: int, example: str) -> type:
    """The `ConvLSTM{rank}D` class, with Keras 3's signature (and `unroll`)."""

    class ConvLSTM(_ConvLSTM):
        def __init__(
            self, filters: int, kernel_size: Any, strides: Any = 1, padding: str = "valid",
            data_format: Optional[str] = None, dilation_rate: Any = 1, activation: Any = "tanh",
            recurrent_activation: Any = "sigmoid", use_bias: bool = True,
            kernel_initializer: Any = "glorot_uniform", recurrent_initializer: Any = "orthogonal",
            bias_initializer: Any = "zeros", unit_forget_bias: bool = True,
            kernel_regularizer: Any = None, recurrent_regularizer: Any = None,
            bias_regularizer: Any = None, activity_regularizer: Any = None,
            kernel_constraint: Any = None, recurrent_constraint: Any = None,
            bias_constraint: Any = None, dropout: float = 0.0, recurrent_dropout: float = 0.0,
            seed: Optional[int] = None, return_sequences: bool = False, return_state: bool = False,
            go_backwards: bool = False, stateful: bool = False, unroll: bool = False, **kwargs,
        ):  # fmt: skip
            super().__init__(locals())

    ConvLSTM.rank = rank
    ConvLSTM.__name__ = ConvLSTM.__qualname__ = f"ConvLSTM{rank}D"
    ConvLSTM.__module__ = __name__
    ConvLSTM.__doc__ = (
        f"`keras.layers.ConvLSTM{rank}D` computed by tfrnn: same arguments, weights and config.\n\n"
        f"    Inputs `[batch, timesteps, {_SPATIAL_NAMES[rank]}, channels]` (spatial sizes and"
        " channels known);\n    the states are `[h, c]`, `[batch, *out_spatial, filters]`."
        " Arguments: see the module\n    docstring and `tfrnn.keras.RNN`.\n\n"
        f"    {example}"
    )
    return register(ConvLSTM)


ConvLSTM1D = _namesake(
    1,
    """>>> tfrnn.keras.ConvLSTM1D(3, 2)(np.ones([2, 4, 6, 2], "float32")).shape
    TensorShape([2, 5, 3])
    """,
)
ConvLSTM2D = _namesake(
    2,
    """>>> tfrnn.keras.ConvLSTM2D(3, 3, padding="same", return_sequences=True)(
    ...     np.ones([2, 4, 5, 5, 2], "float32")).shape
    TensorShape([2, 4, 5, 5, 3])
    """,
)
ConvLSTM3D = _namesake(
    3,
    """>>> tfrnn.keras.ConvLSTM3D(3, 2, strides=2)(np.ones([2, 4, 4, 4, 4, 1], "float32")).shape
    TensorShape([2, 2, 2, 2, 3])
    """,
)
