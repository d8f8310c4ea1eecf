"""How a `tfrnn.tf_keras` layer is saved: as its tf-keras namesake, and as tfrnn 0.1.0 was.

Object-graph checkpoints (`save_weights` in TF format, `tf.train.Checkpoint`) and SavedModels
see a layer's children: tf-keras' recurrent layers have one, `cell`, so their weights are
`layer_with_weights-0/cell/kernel` (see `cell_layer`). A `tfrnn.tf_keras` layer shows the
same child, and a stateful layer adds `states` (tf-keras keeps no states in checkpoints;
tfrnn does). SavedModels also get the core's dropout seeds (`dropout_seeds`), which the
functions they keep read. `.keras` files keep weights per layer path: the cell's at
`cell/vars`, as tf-keras does, and a stateful layer's states at `state_store/vars`, a path
tf-keras never reads.

tfrnn 0.1.0 saved its layers differently: checkpoints and SavedModels under the core,
`_rnn/cell/kernel` and `_rnn/_state_variables/state_variables/0`; `.keras` files with every
weight and state at the layer's own path. Both still load: the layer resolves the `_rnn`
child to its core, and a layer's own `.keras` entries are read as 0.1.0 wrote them.
"""

from __future__ import annotations

from typing import Any

import tf_keras

from tfrnn._keras_common import weights as keras_weights
from tfrnn.tf_keras import cell_layer


def state_list(rnn: Any) -> Any:
    """The trackable list of a stateful core's state variables (the checkpointed `states`).

    It exists before the states do, so a checkpoint restored before the first call binds to
    it and restores each state as it is created.
    """
    return rnn._state_variables.state_variables  # pylint: disable=protected-access


def trackable_children(layer: Any, children: dict, save_type: str) -> dict:
    """`layer`'s children as tf-keras' namesake has them (see the module docstring)."""
    children = dict(children)
    if layer.stateful:
        children["states"] = state_list(layer._rnn)
    seeds = getattr(layer._rnn, "_seeds", None)  # pylint: disable=protected-access
    if save_type == "savedmodel" and seeds is not None:
        children["dropout_seeds"] = seeds
    return children


def lookup_dependency(layer: Any, name: str) -> Any:
    """The child `name` of checkpoints and SavedModels that tf-keras' own lookup misses."""
    if name == "_rnn":
        return layer._rnn  # written by tfrnn 0.1.0
    if name == "states" and layer.stateful:
        return state_list(layer._rnn)
    if name == "dropout_seeds":
        return getattr(layer._rnn, "_seeds", None)  # pylint: disable=protected-access
    return None


class StateStore(tf_keras.layers.Layer):
    """Where a stateful layer's states go in `.keras` files (`<layer>/state_store/vars`).

    Not a sublayer (so not in `weights`, checkpoints or the layer tree): `.keras` saving
    finds it as an attribute. A file without it (tf-keras', or one written before the
    states existed) leaves the states as they are.
    """

    def __init__(self, rnn: Any, name: str):
        super().__init__(name=name, trainable=False)
        object.__setattr__(self, "_core", rnn)

    def save_own_variables(self, store) -> None:
        for index, variable in enumerate(self._core.states):
            store[str(index)] = variable.numpy()

    def load_own_variables(self, store) -> None:
        if len(store.keys()):
            self._core.reset_state([store[str(i)] for i in range(len(store.keys()))])


def load_own_variables(layer: Any, store) -> None:
    """Loads a layer's own `.keras` entries; tfrnn 0.1.0 saved every weight and state there.

    tf-keras' layout (and tfrnn's now) holds only the layer's own weights there, none for a
    recurrent layer. After a 0.1.0 load the layer's cells find no entries of their own; they
    skip that one load. Nothing changes on error.
    """
    own = layer._trainable_weights + layer._non_trainable_weights
    values = [store[str(index)] for index in range(len(store.keys()))]
    if len(values) == len(own):
        keras_weights.assign_checked(own, values, "saved weights", layer.name)
        return
    trainable, non_trainable = keras_weights.cell_weights(layer._rnn)
    variables = layer._dedup_weights(own + trainable + non_trainable) + list(layer._rnn.states)
    keras_weights.assign_checked(variables, values, "saved variables", layer.name)
    for view in cell_layer.views_in(layer.cell):
        _skip_next_load(view)


def _skip_next_load(view: Any) -> None:
    def skip(store):
        object.__delattr__(view, "load_own_variables")

    # An instance attribute shadows the method for one call (object.__setattr__ keeps Keras'
    # attribute tracking out of it).
    object.__setattr__(view, "load_own_variables", skip)
