"""How `tfrnn.RNN` traces while a model is exported: XLA or not, TFLite-ready loops, streaming.

`tfrnn.export` and `tfrnn.tflite` trace a user's model (any module or Keras model that calls
`tfrnn.RNN`s) inside a `tracing.scope(...)`; every `RNN` called while it is active reads it:

* `jit_compile` overrides the RNNs' own choice, so an export for a stock TF Serving has no
  XLA-compiled (`_XlaMustCompile`) functions in it;
* `tflite=True` traces loops the TFLite converter turns into builtin ops: no TensorArrays
  (their element shape would need a fixed batch, else Flex ops), outputs gathered into a
  dense `[time, batch, ...]` tensor, and a plain `LSTMCell` as the composite function the
  converter fuses into `UNIDIRECTIONAL_SEQUENCE_LSTM` (`fuse_lstm`);
* `stream`, a `StreamCapture`, makes each RNN start from explicit states and records its
  final states instead of writing them to its state variables: that is how a whole model,
  with however many RNNs and layers around them, becomes a `step` function with explicit
  states (TF Serving keeps no per-client state).

Outside a scope nothing changes. The scope is read in Python while tracing, so it is part of
what a trace depends on (the RNN keys its traced functions by it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Any, Iterator, Optional

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class TraceOptions:
    """What an export asks of every RNN it traces (see the module docstring)."""

    jit_compile: Optional[bool] = None
    """`None`: each RNN's own choice; `True`/`False`: for all of them."""
    tflite: bool = False
    """Builtin-only loops for the TFLite converter."""
    fuse_lstm: bool = True
    """With `tflite`: plain LSTM cells as the converter's composite LSTM function."""
    probe_cell_state: bool = False
    """With `tflite`: run those LSTMs unfused and report their largest |c| (for checks)."""


@dataclasses.dataclass
class RNNRecord:
    """One RNN call seen by a `StreamCapture`, in call order."""

    rnn: Any
    state_shapes: list
    """Each state's shape without the batch dimension."""
    dtype: tf.DType
    final_states: list = dataclasses.field(default_factory=list)
    fused: bool = False
    """Whether the call traced the composite LSTM function (TFLite)."""
    max_abs_cell_state: Optional[tf.Tensor] = None
    """For a fused LSTM: the largest |c| over all steps (the fused op clips c)."""


class StreamCapture:
    """Feeds explicit initial states to the RNNs of a model and collects their final states.

    Args:
      initial_states: one list of state tensors per RNN call, in call order; `None` only
        records (to discover the RNNs of a model, their state shapes and dtypes).
    """

    def __init__(self, initial_states: Optional[list[list[tf.Tensor]]] = None):
        self.initial_states = initial_states
        self.records: list[RNNRecord] = []

    def next_initial_state(self) -> Optional[list[tf.Tensor]]:
        """The states the next RNN call starts from (`None` when only recording)."""
        if self.initial_states is None:
            return None
        index = len(self.records)
        if index >= len(self.initial_states):
            raise ValueError(
                f"the model called {index + 1} RNNs while streaming, but {len(self.initial_states)} "
                "were found when it was first traced; a model must call the same RNNs on "
                "every call to be exported with a step signature"
            )
        return self.initial_states[index]

    def record(self, record: RNNRecord) -> None:
        self.records.append(record)

    @property
    def final_states(self) -> list[tf.Tensor]:
        """All final states, flat, in call order."""
        return [s for r in self.records for s in r.final_states]


class _Local(threading.local):
    def __init__(self):
        self.options: TraceOptions = TraceOptions()
        self.stream: Optional[StreamCapture] = None
        self.records: Optional[list[RNNRecord]] = None


_local = _Local()


@contextlib.contextmanager
def scope(
    options: Optional[TraceOptions] = None,
    stream: Optional[StreamCapture] = None,
    records: Optional[list[RNNRecord]] = None,
) -> Iterator[None]:
    """Makes `options` (and `stream`) apply to the RNNs traced inside the block.

    Args:
      options: the trace options; `None` keeps the current ones.
      stream: explicit-state streaming (see `StreamCapture`).
      records: a list that receives an `RNNRecord` for every RNN call (without streaming).
    """
    saved = (_local.options, _local.stream, _local.records)
    _local.options = options or _local.options
    _local.stream = stream
    _local.records = records
    try:
        yield
    finally:
        _local.options, _local.stream, _local.records = saved


def current_options() -> TraceOptions:
    return _local.options


def current_stream() -> Optional[StreamCapture]:
    return _local.stream


def report(record: RNNRecord) -> None:
    """Gives an RNN call's record to the stream capture or record list in scope."""
    if _local.stream is not None:
        _local.stream.record(record)
    elif _local.records is not None:
        _local.records.append(record)
