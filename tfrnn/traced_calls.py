"""How `tfrnn.RNN` keeps its traced functions and picks how a call runs (the `Mode`).

An RNN traces its time loop into one `tf.function` per `Mode`: its own `jit_compile`, or
what an export in progress asks for (`tfrnn.tracing`): no XLA, TFLite-ready loops, the
composite LSTM function the TFLite converter fuses, or explicit-state streaming.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import tensorflow as tf

from tfrnn import composite_lstm
from tfrnn import tracing


class Functions:
    """Holds the module's traced functions outside TensorFlow's object tracking.

    A `tf.function` stored as a `tf.Module` attribute would be exported with every trace it
    ever made; the exporter in `tfrnn.export` writes explicit signatures instead.

    Eager calls go straight to a cached concrete function: `tf.function`'s argument matching
    measured ~300 us per call here, more than a whole streaming step takes to run.
    """

    MAX_CACHED = 64

    def __init__(self, run, jit_compile: bool, reduce_retracing: bool):
        self.run = tf.function(
            run, jit_compile=jit_compile, autograph=False, reduce_retracing=reduce_retracing
        )
        self._concrete: dict = {}

    def __call__(self, inputs, mask, initial_state, constants, training):
        # Under a strategy each replica needs its own trace (it reads its own components of
        # the variables); tf.function keys its traces by the replica's context, this cache not.
        if not tf.executing_eagerly() or tf.distribute.has_strategy():
            return self.run(inputs, mask, initial_state, constants, training)

        def spec(tensors):
            return None if tensors is None else tuple((tuple(t.shape), t.dtype) for t in tensors)

        key = (
            tuple(inputs.shape),
            inputs.dtype,
            None if mask is None else tuple(mask.shape),
            spec(initial_state),
            spec(constants),
            training,
        )
        concrete = self._concrete.get(key)
        if concrete is None:
            if len(self._concrete) >= self.MAX_CACHED:
                self._concrete.clear()
            concrete = self.run.get_concrete_function(
                inputs, mask, initial_state, constants, training
            )
            self._concrete[key] = concrete
        return concrete(inputs, mask, initial_state, constants, training)


class Mode(NamedTuple):
    """How one traced function of an RNN runs (its own choice, or an export's)."""

    jit_compile: bool
    tflite: bool = False
    fuse_lstm: bool = False
    """TFLite: trace the composite LSTM function the converter fuses."""
    probe_cell_state: bool = False
    """TFLite check: the unfused LSTM loop, reporting its largest |c|."""
    write_back: bool = True
    """Stateful: write the final states to the state variables (not while streaming)."""
    streaming: bool = False
    """A `step` export: explicit states, and a masked step repeats the output state."""


class FunctionsByMode:
    """The RNN's traced functions, one `Functions` per `Mode`, outside object tracking."""

    def __init__(self, run, reduce_retracing: bool):
        self._run = run
        self._reduce_retracing = reduce_retracing
        self._by_mode: dict = {}

    def __call__(self, mode: Mode) -> Functions:
        functions = self._by_mode.get(mode)
        if functions is None:
            run = self._run

            def run_in_mode(inputs, mask, initial_state, constants, training):
                return run(mode, inputs, mask, initial_state, constants, training)

            functions = Functions(
                run_in_mode,
                jit_compile=mode.jit_compile and not mode.tflite,
                reduce_retracing=self._reduce_retracing,
            )
            self._by_mode[mode] = functions
        return functions


def choose_mode(rnn: Any, inputs: tf.Tensor, mask: Optional[tf.Tensor], streaming: bool) -> Mode:
    """How this call of `rnn` runs: its own options, or those of an export in progress."""
    options = tracing.current_options()
    jit_compile = rnn.jit_compile if options.jit_compile is None else options.jit_compile
    if not options.tflite:
        return Mode(jit_compile, write_back=not streaming, streaming=streaming)
    # The fused op returns no final states and takes no mask: only RNNs whose states nobody
    # reads can use it.
    fusable = (
        options.fuse_lstm
        and composite_lstm.eligible(rnn.cell)
        and mask is None
        and not (rnn.stateful or rnn.return_state or streaming)
        and inputs.shape[0] is not None
        and rnn.length_buckets is None
    )
    return Mode(
        False,
        tflite=True,
        fuse_lstm=fusable and not options.probe_cell_state,
        probe_cell_state=fusable and options.probe_cell_state,
        # A probe only measures: it must not move a stateful model's states on.
        write_back=not (streaming or options.probe_cell_state),
        streaming=streaming,
    )
