"""tfrnn: the Keras RNN layer contract as plain `tf.Module`s whose time loop compiles with XLA.

>>> import tfrnn
>>> rnn = tfrnn.RNN(tfrnn.LSTMCell(64), return_sequences=True)
>>> rnn(tf.zeros([8, 20, 16])).shape
TensorShape([8, 20, 64])
"""

from tfrnn.bucketing import LengthBuckets
from tfrnn.cell import RNNCell
from tfrnn.gru_cell import GRUCell
from tfrnn.lstm_cell import LSTMCell
from tfrnn.rnn import RNN
from tfrnn.simple_rnn_cell import SimpleRNNCell
from tfrnn.stacked_cells import StackedRNNCells
from tfrnn.unroll import rnn_loop
from tfrnn import export
from tfrnn import keras
from tfrnn import tflite

__all__ = [
    "RNN",
    "RNNCell",
    "SimpleRNNCell",
    "LSTMCell",
    "GRUCell",
    "StackedRNNCells",
    "LengthBuckets",
    "rnn_loop",
]

__version__ = "0.1.0"
