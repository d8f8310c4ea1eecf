"""`reset_state(model)`: resets every stateful `tfrnn.keras` layer of a Keras 3 model.

The Keras RNN docs say to call `.reset_state()` "on either a specific layer, or on your
entire model", but Keras 3 models have no such method (keras#20327).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import keras

from tfrnn.keras.layers import RNN


def stateful_layers(model: keras.layers.Layer) -> list[RNN]:
    """The stateful `tfrnn.keras` layers under `model` (inside `Bidirectional` too), in order."""
    found = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, RNN) and layer.stateful and layer not in found:
            found.append(layer)
    return found


def reset_state(model: keras.layers.Layer, states: Optional[Sequence[Any]] = None) -> None:
    """Resets every stateful `tfrnn.keras` layer of `model` (a model, or any layer).

    >>> x = keras.Input((None, 3), batch_size=2)
    >>> model = keras.Model(x, tfrnn.keras.GRU(4, stateful=True)(x))
    >>> tfrnn.keras.reset_state(model, states=[[np.ones([2, 4], "float32")]])
    >>> float(model.layers[-1].states[0].numpy().sum())
    8.0

    Args:
      model: a Keras 3 model or layer.
      states: `None` for each layer's initial state, or one entry per stateful layer (in
        the order of `stateful_layers(model)`), each what that layer's
        `reset_state(states=...)` takes. All are checked before any layer changes.

    Raises:
      ValueError: if `states` does not have one entry per stateful layer, or an entry does
        not fit its layer (then no layer changed).
    """
    layers = stateful_layers(model)
    if states is None:
        for layer in layers:
            layer.reset_state()
        return
    states = list(states)
    if len(states) != len(layers):
        raise ValueError(
            f"states must have one entry per stateful tfrnn.keras layer of {model.name}, "
            f"{len(layers)} ({', '.join(layer.name for layer in layers) or 'none'}), got "
            f"{len(states)}"
        )
    saved = [[v.numpy() for v in layer.states] if layer.states else None for layer in layers]
    try:
        for layer, value in zip(layers, states):
            layer.reset_state(value)
    except (TypeError, ValueError):
        for layer, value in zip(layers, saved):
            if value is not None and layer.states:
                layer.reset_state(value)
        raise
