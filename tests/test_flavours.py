"""_keras_common.flavours: which Keras an object belongs to, and the mix-up messages."""

import keras
import pytest
import tf_keras

from tfrnn._keras_common import flavours


def test_layers_and_symbolic_tensors_are_told_apart():
    assert flavours.flavour_of(keras.Input((2, 3)), "KerasTensor") == "keras"
    assert flavours.flavour_of(tf_keras.Input((2, 3)), "KerasTensor") == "tf_keras"
    assert flavours.flavour_of(keras.layers.GRUCell(2), "Layer") == "keras"
    assert flavours.flavour_of(tf_keras.layers.GRUCell(2), "Layer") == "tf_keras"
    assert flavours.flavour_of(object(), "Layer") is None
    assert flavours.flavour_of(keras.Input((2, 3)), "Layer") is None


def test_only_the_other_keras_is_refused_with_the_adapter_to_use():
    flavours.check_tensors([keras.Input((2, 3)), None, 1.0], "inputs", "LSTM", "keras")
    flavours.check_cell(keras.layers.GRUCell(2), "cell", "keras")
    flavours.check_cell(object(), "cell", "keras")
    with pytest.raises(TypeError, match=r"^mask is a Keras 3 symbolic tensor \(keras.Input\), but tfrnn.tf_keras.GRU is a tf-keras layer; in a Keras 3 model use tfrnn.keras.GRU$"):
        flavours.check_tensors([keras.Input((2,))], "mask", "GRU", "tf_keras")
    with pytest.raises(TypeError, match=r"^cells\[1\] is a tf-keras layer \(GRUCell\), but tfrnn.keras.RNN is a Keras 3 layer; use a Keras 3 or tfrnn cell here, or tfrnn.tf_keras.RNN in a tf-keras model$"):
        flavours.check_cell(tf_keras.layers.GRUCell(2), "cells[1]", "keras")
