"""`tfrnn.keras.SimpleRNN`, `LSTM` and `GRU`: Keras 3's namesakes, computed by tfrnn.

Each takes its Keras 3 twin's constructor arguments in its order, builds the matching tfrnn
cell in the layer's dtype policy, and has the twin's weights (`layer.cell.kernel`, ...),
weight order, `.weights.h5` layout and config keys, so `layer.set_weights(
keras_layer.get_weights())` copies a trained `keras.layers.LSTM` and weight files load both
ways.

Two arguments differ in meaning:

* `use_cudnn` is accepted (and validated as Keras does) but ignored: tfrnn has one
  implementation, the XLA-compiled loop, on every device. cuDNN kernels cannot be compiled by
  XLA (keras#18456) and tie a SavedModel to GPUs (keras#18504).
* `seed` seeds the initial weights and the dropout masks (Keras 3's seeds only dropout); the
  same seed gives the same masks on every path, but not Keras' random numbers.
"""

from __future__ import annotations

from typing import Any, Optional

import keras

from tfrnn._keras_common import cell_config
from tfrnn.gru_cell import GRUCell
from tfrnn.keras.layers import RNN, CellFactory, register
from tfrnn.lstm_cell import LSTMCell
from tfrnn.simple_rnn_cell import SimpleRNNCell

__all__ = ["SimpleRNN", "LSTM", "GRU"]

# What a namesake passes to its layer rather than to its cell.
_LAYER_ARGUMENTS = (
    "return_sequences", "return_state", "go_backwards", "stateful", "unroll",
    "activity_regularizer",
)  # fmt: skip
# Names tfrnn defines as tf-keras does, which Keras 3 defines otherwise (relu6(x + 3) / 6).
_KERAS3_ONLY = ("hard_sigmoid",)


class _BuiltinRNN(RNN):
    """A Keras 3 namesake: builds its tfrnn cell from the Keras 3 cell arguments.

    Arguments as on the Keras 3 twin: `units`; `activation` (and `recurrent_activation`),
    `use_bias`, the `*_initializer`, `*_regularizer` and `*_constraint` arguments (names,
    Keras objects, config dicts or callables), `dropout`, `recurrent_dropout`,
    `unit_forget_bias` (LSTM), `reset_after` (GRU), `seed` and `use_cudnn` (see the module
    docstring); the layer options and `jit_compile` of `tfrnn.keras.RNN`.
    """

    _cell_class: type = SimpleRNNCell

    def __init__(self, arguments: dict):
        """`arguments`: the namesake constructor's `locals()`, its arguments by name."""
        arguments = {k: v for k, v in arguments.items() if k not in ("self", "__class__")}
        kwargs = arguments.pop("kwargs")
        kwargs.update({k: arguments.pop(k) for k in _LAYER_ARGUMENTS if k in arguments})
        seed = arguments.pop("seed")
        use_cudnn = arguments.pop("use_cudnn", "auto")
        if use_cudnn not in ("auto", True, False):
            raise ValueError(
                f"use_cudnn must be 'auto', True or False, got {use_cudnn!r} (tfrnn ignores it: "
                "it has one implementation on every device)"
            )
        cell_kwargs, config = {"seed": seed}, {}
        for key, value in arguments.items():
            cell_kwargs[key], config[key] = cell_config.cell_argument(key, value, keras, _KERAS3_ONLY)
        super().__init__(CellFactory(self._cell_class, cell_kwargs), **kwargs)
        config["seed"] = seed
        cell_config.set_untracked(self, "_cell_config", config)
        self.use_cudnn = use_cudnn

    def get_config(self) -> dict:
        config = super().get_config()
        del config["cell"]
        activity = keras.regularizers.serialize(self.activity_regularizer)
        return {**config, **self._cell_config, "activity_regularizer": activity}

    @classmethod
    def from_config(cls, config: dict, custom_objects: Optional[dict] = None) -> RNN:
        return cls(**{k: v for k, v in config.items() if k != "cell"})


# The cell's arguments read through the layer, as on Keras' namesakes; one the cell lacks
# raises AttributeError.
for _name in (
    "units", "activation", "recurrent_activation", "use_bias", "unit_forget_bias", "reset_after",
    "dropout", "recurrent_dropout", "projection_units",
):  # fmt: skip
    setattr(_BuiltinRNN, _name, property(lambda self, name=_name: getattr(self._core.cell, name)))

# The namesakes' signatures are Keras 3's, grouped a few arguments per line.


@register
class SimpleRNN(_BuiltinRNN):
    """`keras.layers.SimpleRNN` computed by tfrnn: same arguments, weights and config.

    `get_weights()` is `[kernel [features, units], recurrent_kernel [units, units],
    bias [units]]`. Arguments: see `_BuiltinRNN` and `tfrnn.keras.RNN`.

    >>> tfrnn.keras.SimpleRNN(8, return_sequences=True)(np.ones([2, 5, 3], "float32")).shape
    TensorShape([2, 5, 8])
    """

    _cell_class = SimpleRNNCell

    def __init__(
        self, units: int, activation: Any = "tanh", use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform", recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None, recurrent_regularizer: Any = None,
        bias_regularizer: Any = None, activity_regularizer: Any = None,
        kernel_constraint: Any = None, recurrent_constraint: Any = None,
        bias_constraint: Any = None, dropout: float = 0.0, recurrent_dropout: float = 0.0,
        return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
        stateful: bool = False, unroll: bool = False, seed: Optional[int] = None, **kwargs,
    ):  # fmt: skip
        super().__init__(locals())


@register
class LSTM(_BuiltinRNN):
    """`keras.layers.LSTM` computed by tfrnn: same arguments, weights and config.

    `get_weights()` is `[kernel [features, 4 * units], recurrent_kernel [units, 4 * units],
    bias [4 * units]]` (gates i, f, c, o); the states are `[h, c]`. Arguments: see
    `_BuiltinRNN` and `tfrnn.keras.RNN`.

    tfrnn's extension, `projection_units=P` (in the config; Keras 3 has no such argument):
    h is projected to `P` as by `tfrnn.LSTMCell(projection_units=P)` (PyTorch's
    `proj_size`), adding `projection_kernel [units, P]` after the other weights, with
    `recurrent_kernel [P, 4 * units]`, h and the outputs `[batch, P]`, c `[batch, units]`.

    >>> outputs, h, c = tfrnn.keras.LSTM(8, return_sequences=True, return_state=True)(
    ...     np.ones([2, 5, 3], "float32"))
    >>> outputs.shape, c.shape
    (TensorShape([2, 5, 8]), TensorShape([2, 8]))
    """

    _cell_class = LSTMCell

    def __init__(
        self, units: int, activation: Any = "tanh", recurrent_activation: Any = "sigmoid",
        use_bias: bool = True, kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal", bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer: Any = None, recurrent_regularizer: Any = None,
        bias_regularizer: Any = None, activity_regularizer: Any = None,
        kernel_constraint: Any = None, recurrent_constraint: Any = None,
        bias_constraint: Any = None, dropout: float = 0.0, recurrent_dropout: float = 0.0,
        seed: Optional[int] = None, return_sequences: bool = False, return_state: bool = False,
        go_backwards: bool = False, stateful: bool = False, unroll: bool = False,
        use_cudnn: Any = "auto", projection_units: Optional[int] = None, **kwargs,
    ):  # fmt: skip
        super().__init__(locals())


@register
class GRU(_BuiltinRNN):
    """`keras.layers.GRU` computed by tfrnn: same arguments, weights and config.

    `get_weights()` is `[kernel [features, 3 * units], recurrent_kernel [units, 3 * units],
    bias]` (gates z, r, h; bias `[2, 3 * units]` with `reset_after=True`, else
    `[3 * units]`). Arguments: see `_BuiltinRNN` and `tfrnn.keras.RNN`.

    >>> tfrnn.keras.GRU(8, reset_after=False)(np.ones([2, 5, 3], "float32")).shape
    TensorShape([2, 8])
    """

    _cell_class = GRUCell

    def __init__(
        self, units: int, activation: Any = "tanh", recurrent_activation: Any = "sigmoid",
        use_bias: bool = True, kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal", bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None, recurrent_regularizer: Any = None,
        bias_regularizer: Any = None, activity_regularizer: Any = None,
        kernel_constraint: Any = None, recurrent_constraint: Any = None,
        bias_constraint: Any = None, dropout: float = 0.0, recurrent_dropout: float = 0.0,
        seed: Optional[int] = None, return_sequences: bool = False, return_state: bool = False,
        go_backwards: bool = False, stateful: bool = False, unroll: bool = False,
        reset_after: bool = True, use_cudnn: Any = "auto", **kwargs,
    ):  # fmt: skip
        super().__init__(locals())
