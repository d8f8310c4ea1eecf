"""tfrnn: the Keras RNN layer contract as plain `tf.Module`s whose time loop compiles with XLA.

>>> import tfrnn
>>> rnn = tfrnn.RNN(tfrnn.LSTMCell(64), return_sequences=True)
>>> rnn(tf.zeros([8, 20, 16])).shape
TensorShape([8, 20, 64])

The adapters (`tfrnn.keras`, `tfrnn.tf_keras`), `tfrnn.export` and `tfrnn.tflite` load on
first use, so `import tfrnn` imports neither Keras nor the export and TFLite code. An adapter
is also imported as soon as its Keras is, so that its layers are registered for `load_model`.
"""

import importlib

from tfrnn._keras_common.import_hooks import when_imported
from tfrnn.bidirectional import Bidirectional
from tfrnn.bucketing import LengthBuckets
from tfrnn.cell import RNNCell
from tfrnn.conv_lstm_cell import ConvLSTM1DCell, ConvLSTM2DCell, ConvLSTM3DCell, ConvLSTMCell
from tfrnn.gru_cell import GRUCell
from tfrnn.loop import rnn_loop
from tfrnn.lstm_cell import LSTMCell
from tfrnn.rnn import RNN
from tfrnn.simple_rnn_cell import SimpleRNNCell
from tfrnn.stacked_cells import StackedRNNCells
from tfrnn.trainable_initial_state import TrainableInitialState

__all__ = [
    "RNN",
    "RNNCell",
    "SimpleRNNCell",
    "LSTMCell",
    "GRUCell",
    "StackedRNNCells",
    "ConvLSTMCell",
    "ConvLSTM1DCell",
    "ConvLSTM2DCell",
    "ConvLSTM3DCell",
    "TrainableInitialState",
    "Bidirectional",
    "LengthBuckets",
    "rnn_loop",
    "export",
    "tflite",
    "keras",
    "tf_keras",
]

__version__ = "0.1.0"

# Submodules loaded on first attribute access (PEP 562).
_LAZY = {
    "export": "tfrnn.export",
    "tflite": "tfrnn.tflite",
    "tf_keras": "tfrnn.tf_keras",
    "keras": "tfrnn.keras",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tfrnn' has no attribute {name!r}")
    value = importlib.import_module(module)
    globals()[name] = value
    return value


def _register_tf_keras_layers():
    importlib.import_module("tfrnn.tf_keras")


def _register_keras_layers():
    importlib.import_module("tfrnn.keras")


when_imported("tf_keras", _register_tf_keras_layers)
# TensorFlow 2.21 imports Keras 3 itself, so this usually runs at `import tfrnn`.
when_imported("keras", _register_keras_layers)


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
