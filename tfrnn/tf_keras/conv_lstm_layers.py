"""`tfrnn.tf_keras.ConvLSTM1D`, `ConvLSTM2D` and `ConvLSTM3D`: tf-keras' namesakes, run by tfrnn.

Each takes its tf-keras twin's constructor arguments in its order, builds the matching tfrnn
ConvLSTM cell once the inputs' spatial shape is known, and has the twin's weights (`kernel
[*kernel_size, channels, 4 * filters]`, `recurrent_kernel [*kernel_size, filters,
4 * filters]`, `bias [4 * filters]`), checkpoint keys and config keys, so
`set_weights(keras_layer.get_weights())` copies a `tf_keras.layers.ConvLSTM2D` and weight
files (`.h5`, checkpoints) load both ways. The variables are named as tfrnn's other
namesakes' (`<layer>/conv_lstm_cell/kernel:0`); tf-keras' ConvLSTMs leave out the cell
(`<layer>/kernel:0`); files match weights by layer and order, so either loads the other's. As in tf-keras the default
`recurrent_activation` is `"hard_sigmoid"` (tf-keras' `clip(0.2 x + 0.5, 0, 1)`).
Differences, each tested: `data_format="channels_first"` is refused (the cells take
channels-last inputs); `unroll=True` is accepted (tf-keras refuses it for convolutional
RNNs); `seed` seeds the initial weights and dropout masks; `jit_compile` (the loop's XLA
compilation, as on `tfrnn.tf_keras.RNN`) is accepted; and `zero_output_for_mask`, which
`tf_keras.layers.Bidirectional` sets on its halves, zeroes masked steps of the returned
sequence as on tfrnn's other layers (and Keras 3's ConvLSTMs), where tf-keras' ConvRNN
ignores it.
"""

from __future__ import annotations

from typing import Any, Optional

import tensorflow as tf

from tfrnn._keras_common import conv_lstm
from tfrnn.conv_lstm_cell import _SPATIAL_NAMES
from tfrnn.tf_keras.layers import _BuiltinRNN, _register

__all__ = ["ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"]


class _ConvLSTM(_BuiltinRNN):
    """A tf-keras ConvLSTM namesake; see the module docstring and `tfrnn.tf_keras.RNN`."""

    rank = 0

    @property
    def _cell_class(self) -> type:
        return conv_lstm.CELLS[self.rank]

    def get_config(self) -> dict:
        config = super().get_config()
        del config["implementation"]  # tf-keras' ConvLSTMs have none
        return config

    def _core_input_shape(self, input_shape: Any) -> Any:
        shape = super()._core_input_shape(input_shape)
        return conv_lstm.check_sequence_shape(shape, self.rank, self.name)

    def reset_states(self, states: Any = None) -> None:
        """As `tfrnn.tf_keras.RNN.reset_states`, but the layer must be built (the states' shape)."""
        if self.stateful:
            conv_lstm.check_states_known(self._rnn.cell, self.rank, self.name)
        super().reset_states(states)

    reset_state = reset_states  # Keras 3's name

    def compute_output_shape(self, input_shape: Any):
        """Static output shape(s), also before the layer is built (as tf-keras')."""
        shape = self._core_input_shape(input_shape)
        state = tf.TensorShape([shape[0]] + self._rnn.cell.state_shape_for(shape))
        output = state[:1].concatenate(shape[1:2]).concatenate(state[1:]) if self.return_sequences else state
        return [output, state, state] if self.return_state else output


for _name in conv_lstm.CONV_ARGUMENTS:
    setattr(_ConvLSTM, _name, property(lambda self, name=_name: getattr(self._rnn.cell, name)))


def _namesake(rank: int, example: str) -> type:
    """The `ConvLSTM{rank}D` class, with tf-keras' signature (and `unroll`, `seed`)."""
    ones = (1,) * rank if rank > 1 else 1

    class ConvLSTM(_ConvLSTM):
        def __init__(
            self, filters: int, kernel_size: Any, strides: Any = ones, padding: str = "valid",
            data_format: Optional[str] = None, dilation_rate: Any = ones,
            activation: Any = "tanh", recurrent_activation: Any = "hard_sigmoid",
            use_bias: bool = True, kernel_initializer: Any = "glorot_uniform",
            recurrent_initializer: Any = "orthogonal", bias_initializer: Any = "zeros",
            unit_forget_bias: bool = True,
            kernel_regularizer: Any = None, recurrent_regularizer: Any = None,
            bias_regularizer: Any = None, activity_regularizer: Any = None,
            kernel_constraint: Any = None, recurrent_constraint: Any = None,
            bias_constraint: Any = None, return_sequences: bool = False,
            return_state: bool = False, go_backwards: bool = False, stateful: bool = False,
            dropout: float = 0.0, recurrent_dropout: float = 0.0, unroll: bool = False,
            seed: Optional[int] = None, **kwargs,
        ):  # fmt: skip
            super().__init__(locals())

    ConvLSTM.rank = rank
    ConvLSTM.__name__ = ConvLSTM.__qualname__ = f"ConvLSTM{rank}D"
    ConvLSTM.__module__ = __name__
    ConvLSTM.__doc__ = (
        f"`tf_keras.layers.ConvLSTM{rank}D` computed by tfrnn: same arguments, weights and config.\n\n"
        f"    Inputs `[batch, timesteps, {_SPATIAL_NAMES[rank]}, channels]` (spatial sizes and"
        " channels known);\n    the states are `[h, c]`, `[batch, *out_spatial, filters]`."
        " Arguments: see the module\n    docstring and `tfrnn.tf_keras.RNN`.\n\n"
        f"    {example}"
    )
    return _register(ConvLSTM)


ConvLSTM1D = _namesake(
    1,
    """>>> tfrnn.tf_keras.ConvLSTM1D(3, 2)(tf.ones([2, 4, 6, 2])).shape
    TensorShape([2, 5, 3])
    """,
)
ConvLSTM2D = _namesake(
    2,
    """>>> tfrnn.tf_keras.ConvLSTM2D(3, 3, padding="same", return_sequences=True)(
    ...     tf.ones([2, 4, 5, 5, 2])).shape
    TensorShape([2, 4, 5, 5, 3])
    """,
)
ConvLSTM3D = _namesake(
    3,
    """>>> tfrnn.tf_keras.ConvLSTM3D(3, 2, strides=2)(tf.ones([2, 4, 4, 4, 4, 1])).shape
    TensorShape([2, 2, 2, 2, 3])
    """,
)
