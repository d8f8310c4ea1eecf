"""An RNN's traced functions: one `tf.function` per route and state use, and a fast eager entry.

The functions live outside TensorFlow's object tracking: a `tf.function` stored as a
`tf.Module` attribute would be exported with every trace it ever made; the exporter writes
explicit signatures instead.
"""

from __future__ import annotations

import copy
from typing import Callable

import tensorflow as tf

from tfrnn._core.paths import Route


class TracedFunction:
    """One route's `tf.function`, called eagerly through a cache of concrete functions.

    Eager calls go straight to a cached concrete function: `tf.function`'s own argument
    matching costs more per call than a whole streaming step takes to run (figures in
    docs/performance.md). Those concrete functions come from a second `tf.function` of the
    same computation, never from the one that calls in a trace use: a gradient taken in a
    trace (a plain `tf.function` training step) appends the forward pass's saved tensors to
    its concrete function's outputs, and an eager `GradientTape` over that concrete function
    would then differentiate them too, through the XLA loop's TensorLists ("TensorList
    crossing the XLA/TF boundary").
    """

    MAX_CACHED = 64

    def __init__(self, run: Callable, jit_compile: bool, reduce_retracing: bool):
        self.run, self._eager_run = (
            tf.function(
                run, jit_compile=jit_compile, autograph=False, reduce_retracing=reduce_retracing
            )
            for _ in range(2)
        )
        self._concrete: dict = {}

    def __call__(self, inputs, mask, initial_state, constants, training):
        # Under a strategy each replica needs its own trace (it reads its own components of
        # the variables); tf.function keys its traces by the replica's context, this cache not.
        if not tf.executing_eagerly() or tf.distribute.has_strategy():
            return self.run(inputs, mask, initial_state, constants, training)

        def spec(tensors):
            return None if tensors is None else tuple((tuple(t.shape), t.dtype) for t in tensors)

        if isinstance(inputs, tf.Tensor):
            inputs_key = (tuple(inputs.shape), inputs.dtype)
        else:  # nested inputs: the nest's structure is part of the signature
            inputs_key = (repr(tf.nest.map_structure(lambda _: None, inputs)), spec(tf.nest.flatten(inputs)))
        key = (
            inputs_key,
            None if mask is None else tuple(mask.shape),
            spec(initial_state),
            spec(constants),
            training,
        )
        concrete = self._concrete.get(key)
        if concrete is None:
            if len(self._concrete) >= self.MAX_CACHED:
                self._concrete.clear()
            concrete = self._eager_run.get_concrete_function(
                inputs, mask, initial_state, constants, training
            )
            self._concrete[key] = concrete
        return concrete(inputs, mask, initial_state, constants, training)


class FunctionsByRoute:
    """The RNN's traced functions, one `TracedFunction` per route and state use.

    Args:
      run: `run(route, reads_states, write_back, inputs, mask, initial_state, constants,
        training) -> (output, final_states)`, the RNN's traced computation: `reads_states`,
        start from a stateful RNN's state variables (unless given states); `write_back`,
        assign its final states to them.
      reduce_retracing: passed to every `tf.function` (off for unrolled loops, whose
        traces are per length anyway).
    """

    def __init__(self, run: Callable, reduce_retracing: bool):
        self._run = run
        self._reduce_retracing = reduce_retracing
        self._by_route: dict = {}

    def __deepcopy__(self, memo: dict) -> "FunctionsByRoute":
        # Traces hold graphs (which cannot be copied) bound to the original's variables: a
        # copy of the RNN traces its own, so it gets an empty cache bound to the copy.
        return FunctionsByRoute(copy.deepcopy(self._run, memo), self._reduce_retracing)

    def __call__(self, route: Route, reads_states: bool, write_back: bool) -> TracedFunction:
        key = (route, reads_states, write_back)
        function = self._by_route.get(key)
        if function is None:
            run = self._run

            def run_route(inputs, mask, initial_state, constants, training):
                return run(route, reads_states, write_back, inputs, mask, initial_state, constants, training)

            function = TracedFunction(run_route, route.jit_compile, self._reduce_retracing)
            self._by_route[key] = function
        return function
