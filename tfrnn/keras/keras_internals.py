"""The few Keras 3 internals the adapter relies on, in one place.

Keras 3 has no public API for these; each is small and checked by the tests:

* `outside_stateless_scope`: Keras builds a subclassed model by tracing it inside a
  `StatelessScope`, where new variables are deferred, but a tfrnn cell's `tf.Variable`s exist
  at once and their Keras twins must wrap them at once (`cell_layers.keras_variable`);
* `in_symbolic_scope`: whether Keras is tracing only for shapes (`compute_output_spec`);
* `keras_mask`: the mask Keras attaches to a tensor (`Embedding(mask_zero=True)`), which
  Keras 3 does not pass to `call` when a layer gets more than one tensor argument.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

from keras.src.backend.common import global_state
from keras.src.backend.common.masking import get_keras_mask
from keras.src.backend.common.symbolic_scope import in_symbolic_scope as _in_symbolic_scope


@contextlib.contextmanager
def outside_stateless_scope() -> Iterator[None]:
    """Creates variables for real inside the block, even within a Keras `StatelessScope`."""
    scope = global_state.get_global_attribute("stateless_scope")
    global_state.set_global_attribute("stateless_scope", None)
    try:
        yield
    finally:
        global_state.set_global_attribute("stateless_scope", scope)


def in_symbolic_scope() -> bool:
    """Whether Keras traces the current call only for its output shapes."""
    return bool(_in_symbolic_scope())


def keras_mask(tensor: Any) -> Optional[Any]:
    """The Keras mask attached to `tensor`, if any."""
    return get_keras_mask(tensor)
