"""tfrnn's recurrent layers as Keras 3 (`keras`) layers: `RNN`, `SimpleRNN`, `LSTM`, `GRU`, `ConvLSTM*D`.

See `tfrnn.keras.layers`, `tfrnn.keras.builtin_layers` and `tfrnn.keras.conv_lstm_layers`. The
layers are registered with Keras 3 under the package name `tfrnn`, so
`keras.models.load_model` needs no `custom_objects` once `tfrnn` is imported;
`reset_state(model)` resets a whole model's stateful layers. For tf-keras models use
`tfrnn.tf_keras`.
"""

from tfrnn.keras.builtin_layers import GRU, LSTM, SimpleRNN
from tfrnn.keras.conv_lstm_layers import ConvLSTM1D, ConvLSTM2D, ConvLSTM3D
from tfrnn.keras.layers import RNN
from tfrnn.keras.models import reset_state, stateful_layers

__all__ = [
    "RNN", "SimpleRNN", "LSTM", "GRU", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "reset_state",
    "stateful_layers",
]  # fmt: skip
