"""The trace context: what code above the core asks of the `tfrnn.RNN`s it traces.

An export, a TFLite conversion or a Keras adapter traces a user's model (any module or Keras
model that calls `tfrnn.RNN`s) inside `scope(...)`; every RNN called while it is active
reads it, and nothing changes outside a scope:

* `jit_compile` overrides the RNNs' own choice (an export for a stock TF Serving has no
  XLA-compiled functions in it);
* `builtin_only` traces loops the TFLite converter turns into builtin ops (no TensorArrays;
  outputs gathered into a dense tensor);
* `stream`, a `StateFeed`, makes each RNN start from explicit states and leave its state
  variables alone: how a whole model becomes a `step` function with explicit states;
* `substitute` may take over an RNN call (`RNNCall`) and compute it another way: the TFLite
  code traces a plain LSTM as the composite function the converter fuses;
* `observer` is told about every RNN call (`CallRecord`: its states and final states);
* `ignore_states` runs stateful RNNs from their initial states without touching (or
  creating) their state variables, for graphs that only give a model its shapes.

This is the only channel between the core and the code above it, so the core imports none of
that code. The context is read in Python while tracing, so it is part of what a trace
depends on (the RNN keys its traced functions by the route it picks from it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Any, Callable, Iterator, Optional, Protocol

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class RNNCall:
    """An RNN call as a `Substitute` sees it (after validation, before its loop runs)."""

    rnn: Any
    """The `tfrnn.RNN` (read its public attributes: `cell`, `go_backwards`, ...)."""
    inputs: tf.Tensor
    """`[batch, time, features...]` in the compute dtype."""
    mask: Optional[tf.Tensor]
    initial_state: Optional[list]
    """The explicit initial states, or `None` for the cell's initial states."""
    reads_final_states: bool
    """Whether anything reads the final states (stateful, `return_state`, streaming)."""


@dataclasses.dataclass(frozen=True)
class CallRecord:
    """One RNN call, as the `observer` is told about it, in call order."""

    rnn: Any
    state_shapes: list
    """Each state's shape without the batch dimension."""
    dtype: tf.DType
    """The states' (compute) dtype."""
    final_states: list
    """The final states (empty where a `substitute` computed the call)."""
    inputs: list = dataclasses.field(default_factory=list)
    """The call's inputs and mask, flat (what an export traces back to the model's inputs)."""


class Substitute(Protocol):
    """Computes some RNN calls another way (see the module docstring)."""

    def takes(self, call: RNNCall) -> bool:
        """Whether this substitute computes `call` (its states are then not available)."""

    def __call__(self, call: RNNCall) -> tf.Tensor:
        """The call's output (what `return_sequences` asks for)."""


class StateFeed(Protocol):
    """Gives each RNN call of a streamed model its explicit initial states, in call order."""

    def next_initial_state(self) -> Optional[list]:
        """The states the next RNN call starts from; `None` for its usual start."""


@dataclasses.dataclass(frozen=True)
class TraceContext:
    """What the RNNs traced inside a `scope` do differently (see the module docstring)."""

    jit_compile: Optional[bool] = None
    builtin_only: bool = False
    stream: Optional[StateFeed] = None
    substitute: Optional[Substitute] = None
    observer: Optional[Callable[[CallRecord], None]] = None
    ignore_states: bool = False


class _Local(threading.local):
    def __init__(self):
        self.context = TraceContext()


_local = _Local()


def current() -> TraceContext:
    """The context in effect (the default one outside every scope)."""
    return _local.context


@contextlib.contextmanager
def scope(**changes: Any) -> Iterator[TraceContext]:
    """Applies `changes` (fields of `TraceContext`) to the RNNs traced inside the block.

    Scopes nest: an inner scope keeps what it does not change.
    """
    saved = _local.context
    _local.context = dataclasses.replace(saved, **changes)
    try:
        yield _local.context
    finally:
        _local.context = saved
