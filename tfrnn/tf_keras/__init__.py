"""tfrnn's recurrent layers as tf-keras (`tf_keras`) layers: `RNN`, `SimpleRNN`, `LSTM`, `GRU`, `ConvLSTM*D`.

See `tfrnn.tf_keras.layers` and `tfrnn.tf_keras.conv_lstm_layers`. The layers are registered
with tf-keras under the package name `tfrnn`, so `tf_keras.models.load_model` needs no
`custom_objects` once `tfrnn` is imported.
"""

from tfrnn.tf_keras.conv_lstm_layers import ConvLSTM1D, ConvLSTM2D, ConvLSTM3D
from tfrnn.tf_keras.layers import GRU, LSTM, RNN, SimpleRNN

__all__ = ["RNN", "SimpleRNN", "LSTM", "GRU", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"]
