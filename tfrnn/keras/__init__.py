"""tfrnn's recurrent layers as Keras 3 (`keras`) layers: `RNN`, `SimpleRNN`, `LSTM`, `GRU`.

See `tfrnn.keras.layers` and `tfrnn.keras.builtin_layers`. The layers are registered with
Keras 3 under the package name `tfrnn`, so `keras.models.load_model` needs no
`custom_objects` once `tfrnn` is imported; `reset_state(model)` resets a whole model's
stateful layers. For tf-keras models use `tfrnn.tf_keras`.
"""

from tfrnn.keras.builtin_layers import GRU, LSTM, SimpleRNN
from tfrnn.keras.layers import RNN
from tfrnn.keras.models import reset_state, stateful_layers

__all__ = ["RNN", "SimpleRNN", "LSTM", "GRU", "reset_state", "stateful_layers"]
