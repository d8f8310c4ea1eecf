"""`RNN`: the Keras `RNN` layer contract as a `tf.Module` whose time loop compiles with XLA.

A call goes one way: `make_plan` validates its arguments into a `CallPlan`; the RNN creates
its variables; `paths.choose` picks the route (which loop, with XLA or not); the route's
traced function runs it from the starting states; the final states are written back
(stateful) and reported to the trace context's observer, if any.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrnn import bucketing
from tfrnn._core import dropout as dropout_lib
from tfrnn._core import paths
from tfrnn._core import plan as plan_lib
from tfrnn._core import trace_context
from tfrnn._core import variables as variables_lib
from tfrnn._core.arguments import check_bool
from tfrnn._core.cell_adapter import CellAdapter
from tfrnn._core.functions import FunctionsByRoute
from tfrnn._core.stateful import StateVariables
from tfrnn.stacked_cells import StackedRNNCells


def as_cell(cell: Any) -> Any:
    """A list of cells becomes `StackedRNNCells`; any other cell runs as it is.

    Another library's stacked cells (tf-keras' or Keras 3's `StackedRNNCells`, or a subclass)
    run their own `call`, in their own state order.
    """
    if isinstance(cell, (list, tuple)):
        return StackedRNNCells(list(cell))
    return cell


class RNN(tf.Module):
    """A recurrent layer: runs a cell over the time axis, as Keras' `RNN` does.

    Calling the module runs `cell` over `inputs` `[batch, timesteps, features...]` and
    returns the last output `[batch, output_size]`, or with `return_sequences=True` every
    step's output `[batch, timesteps, output_size]`; with `return_state=True` the result is
    `[output, *final_states]`, the states flat in the cell's order (`[h, c]` for an LSTM).
    The loop runs as `tf.while_loop` (or a static unroll) inside one
    `tf.function(jit_compile=...)`; it works called eagerly, from the caller's
    `tf.function`, or from the caller's `jit_compile` function, with gradients from each.

    Masks behave as in Keras: on a masked step the states carry over and the output repeats
    the previous output (zeros with `zero_output_for_mask=True`, which only affects the
    returned sequence, as Keras' docs say).

    Stateful: the states live in non-trainable `tf.Variable`s (`states`) created at the first
    call for its static batch size; each call starts from them and writes its final states
    back. An explicit `initial_state` wins for that call, and its final states are written
    back too. `reset_state()` sets the cell's initial state (zeros by default),
    `reset_state(states=[...])` given values. Created under a `tf.distribute` strategy, each
    replica holds the states of its slice of the global batch; inside `strategy.run` a call
    takes its replica's batch, outside it the global one (see `tfrnn._core.distribute`).

    >>> rnn = tfrnn.RNN(tfrnn.LSTMCell(32), return_sequences=True)
    >>> rnn(tf.random.normal([4, 10, 8])).shape
    TensorShape([4, 10, 32])

    Args:
      cell: a cell (`tfrnn` cell, `tf.Module` or object with `call(inputs, states)` and
        `state_size`, tf-keras or Keras 3 layer), or a list of cells to stack.
      return_sequences: return every step's output instead of the last one.
      return_state: also return the final states.
      go_backwards: process the sequence backwards; the returned sequence is reversed.
      stateful: keep the final states for the next call (see above).
      unroll: unroll the loop in the graph (needs a static number of timesteps).
      zero_output_for_mask: zeros at masked steps of the returned sequence.
      jit_compile: compile the loop with XLA.
      name: the module's name.
      length_buckets: pad the time axis to bucket lengths (and mask the padding) so that
        XLA compiles once per bucket, not once per length: `True` for powers of two from 8,
        a list of lengths, or a `LengthBuckets`. Results equal the unpadded run's.
    """

    def __init__(
        self,
        cell: Any,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        zero_output_for_mask: bool = False,
        jit_compile: bool = True,
        name: Optional[str] = None,
        *,
        length_buckets: bucketing.BucketsArg = None,
    ):
        super().__init__(name=name)
        self.return_sequences = check_bool(return_sequences, "return_sequences")
        self.return_state = check_bool(return_state, "return_state")
        self.go_backwards = check_bool(go_backwards, "go_backwards")
        self.stateful = check_bool(stateful, "stateful")
        self.unroll = check_bool(unroll, "unroll")
        self.zero_output_for_mask = check_bool(zero_output_for_mask, "zero_output_for_mask")
        self.jit_compile = check_bool(jit_compile, "jit_compile")
        self.length_buckets = bucketing.as_buckets(length_buckets)
        self.cell = as_cell(cell)
        self._adapter = CellAdapter(self.cell, "cell")
        self._options = paths.LoopOptions(
            return_sequences=self.return_sequences,
            go_backwards=self.go_backwards,
            zero_output_for_mask=self.zero_output_for_mask,
            unroll=self.unroll,
            jit_compile=self.jit_compile,
        )
        self._state_variables = (
            StateVariables(self._adapter.state_names, name="states") if self.stateful else None
        )
        self._seeds: Optional[dropout_lib.SeedStream] = None
        self._feature_shape: Optional[tf.TensorShape] = None
        self._built_key: Optional[str] = None
        self._functions = FunctionsByRoute(self._traced, reduce_retracing=not self.unroll)

    # -- public surface ----------------------------------------------------------------------

    @property
    def states(self) -> list[tf.Variable]:
        """The state variables of a stateful RNN (empty before its first call)."""
        if self._state_variables is None:
            return []
        return list(self._state_variables.state_variables)

    @property
    def input_shape(self) -> Any:
        """`[batch, None, *features]` once built (batch: a stateful RNN's), else `None`.

        A nest of such shapes for nested inputs.
        """
        if self._feature_shape is None:
            return None
        batch = self._state_variables.batch_size if self.stateful else None
        return tf.nest.map_structure(
            lambda features: tf.TensorShape([batch, None]).concatenate(features), self._feature_shape
        )

    @property
    def state_shapes(self) -> list[tf.TensorShape]:
        """Each state's shape without the batch dimension, in the cell's order."""
        return list(self._adapter.flat_state_shapes)

    @property
    def output_size(self) -> tf.TensorShape:
        """One step's output shape without the batch dimension (the cell's `output_size`)."""
        return self._adapter.output_shape

    @property
    def trainable_variables(self) -> Sequence[tf.Variable]:
        """The cell's trainable variables (including those of Keras 3 cells)."""
        cell_variables = [
            v for v in self._adapter.trainable_variables() if isinstance(v, tf.Variable)
        ]
        return tuple(variables_lib.unique(list(super().trainable_variables) + cell_variables))

    def get_initial_state(self, batch_size: Any, dtype: Optional[tf.DType] = None) -> list:
        """The states a sequence starts from, flat: the cell's `get_initial_state`, or zeros.

        Args:
          batch_size: an int or a scalar int tensor.
          dtype: the states' dtype; default: the cell's compute dtype for float32 inputs.
        """
        dtype = dtype or self._adapter.compute_dtype(tf.float32)
        return self._adapter.initial_state(batch_size, dtype)

    def build(self, input_shape: Sequence[Optional[int]]) -> None:
        """Creates the cell's variables (and a stateful RNN's states) for `input_shape`.

        Args:
          input_shape: `[batch, timesteps, features...]` (a tuple/dict nest of `TensorShape`s
            for nested inputs); a stateful RNN needs the batch.
        """
        input_shape = _as_shapes(input_shape)
        key = repr(input_shape)
        if key == self._built_key and not self._needs_states():
            return  # built for these shapes already (every call builds: keep it cheap)
        first = tf.nest.flatten(input_shape)[0]
        # Each step's input: the same nest without the time axis.
        self._adapter.build(
            tf.nest.map_structure(lambda s: tf.TensorShape([s[0]]).concatenate(s[2:]), input_shape)
        )
        if self._feature_shape is None:
            self._feature_shape = tf.nest.map_structure(lambda s: s[2:], input_shape)
        input_shape = first
        if self._adapter.needs_seed(True) and self._seeds is None:
            seed = getattr(self._adapter.cell, "seed", None)
            self._seeds = dropout_lib.SeedStream(seed if isinstance(seed, int) else None, name="seeds")
        if self._needs_states():
            # The states are variables in the variables' dtype, read in the compute dtype.
            dtype = self._adapter.variable_dtype
            self._state_variables.ensure(input_shape[0], lambda batch: self.get_initial_state(batch, dtype))
        self._built_key = key

    def _needs_states(self) -> bool:
        """Whether a stateful RNN's states still have to be created for this call."""
        return (
            self.stateful
            and not self._state_variables.created
            and not trace_context.current().ignore_states
        )

    def __call__(
        self,
        inputs: Any,
        mask: Any = None,
        initial_state: Any = None,
        constants: Any = None,
        training: Any = False,
    ):
        """Runs the cell over `inputs`.

        Args:
          inputs: `[batch, timesteps, features...]`, floating; or a `tf.RaggedTensor`
            `[batch, (timesteps), features...]`, which runs as its padded values with the
            mask of its row lengths, and returns a sequence just as ragged.
          mask: `[batch, timesteps]` bool (or 0/1 numbers); `False` skips a step.
          initial_state: the states to start from, one tensor per state (`[h, c]`); for
            stacked cells flat or nested per cell (`[[h1, c1], h2]`).
          constants: tensors passed to every step of cells whose `call` takes `constants`.
          training: whether dropout applies (a Python bool).

        Returns:
          The output, or `[output, *final_states]` with `return_state=True`.
        """
        context = trace_context.current()
        plan = plan_lib.make_plan(
            self._adapter, inputs, mask, initial_state, constants, training,
            unroll=self.unroll,
            streamed_state=None if context.stream is None else context.stream.next_initial_state(),
            state_note=self._state_note(),
        )  # fmt: skip
        self.build(plan.input_shape)
        # Streaming passes explicit states and leaves the variables alone: any batch will do.
        keeps_states = self.stateful and context.stream is None and not context.ignore_states
        if keeps_states:
            self._state_variables.check_call_batch(plan.batch)
            if plan.batch is None:
                inputs = tf.nest.map_structure(self._state_variables.with_checked_batch, plan.inputs)
                plan = dataclasses.replace(plan, inputs=inputs)
        output, final_states = self._run(plan, context, keeps_states)
        if context.observer is not None:
            fed = tf.nest.flatten([inputs, mask], expand_composites=True)
            record = trace_context.CallRecord(self, self.state_shapes, plan.dtype, list(final_states), fed)
            context.observer(record)
        if self.return_sequences:
            output = plan.ragged_output(output, self.go_backwards)
        if self.return_state:
            return [output] + list(final_states)
        return output

    def reset_state(self, states: Any = None) -> None:
        """Sets a stateful RNN's states to the cell's initial state or to `states`.

        Args:
          states: `None` for the cell's initial state (zeros unless the cell defines
            `get_initial_state`; before the first call nothing needs resetting), or one array
            per state, `[batch, *state_shape]` each (for stacked cells flat or nested per
            cell), which also fixes the batch before the first call. Nothing changes if they
            are invalid. Under a strategy `batch` is the global batch (a replica's inside
            `strategy.run`).
        """
        if not self.stateful:
            raise ValueError(
                "reset_state() is for stateful RNNs; this RNN was created with stateful=False"
            )
        variables = self._state_variables
        if states is None:
            if not variables.created:
                return  # the first call creates the states at the cell's initial state
            dtype = variables.state_variables[0].dtype
            variables.assign(self.get_initial_state(variables.batch_here(), dtype))
            return
        flat = plan_lib.flatten_states(self._adapter, states, "states")
        batch = variables.batch_here()
        if batch is None:
            batch = int(np.shape(flat[0])[0]) if np.ndim(flat[0]) >= 1 else None
        values = plan_lib.check_state_values(
            self._adapter, flat, batch, "states", exact=True, note=self._state_note()
        )
        if not variables.created:
            dtype = self._adapter.variable_dtype
            variables.ensure(batch, lambda rows: self.get_initial_state(rows, dtype), values)
        else:
            variables.assign(values)

    # -- running a call ----------------------------------------------------------------------

    def _state_note(self) -> str:
        return self._state_variables.batch_note() if self._state_variables is not None else ""

    def _run(self, plan, context, keeps_states: bool) -> tuple[tf.Tensor, list]:
        """Runs a validated call on the route `paths.choose` picks for it."""
        variables = self._state_variables
        # Replicated states outside strategy.run (see tfrnn._core.distribute) live on several
        # devices, and an XLA cluster runs on one: they are gathered before the compiled
        # loop and scattered back after it.
        gathered = keeps_states and variables.global_view()
        if gathered and plan.initial_state is None:
            plan = dataclasses.replace(plan, initial_state=variables.read(plan.dtype))
        length = None
        if self.length_buckets is not None:
            flat = plan.flat_inputs
            padded, mask, length = self.length_buckets.pad(flat[0], plan.mask)
            padded = [padded] + [self.length_buckets.pad(x, None)[0] for x in flat[1:]]
            inputs = tf.nest.pack_sequence_as(plan.inputs, padded)
            plan = dataclasses.replace(plan, inputs=inputs, mask=mask)
        reads_final_states = self.stateful or self.return_state or context.stream is not None
        call = trace_context.RNNCall(self, plan.inputs, plan.mask, plan.initial_state, reads_final_states)
        route = paths.choose(self._options, self._adapter, plan, context, call)
        if route.path is paths.Path.SUBSTITUTE:
            output, final_states = context.substitute(call), []
        else:
            reads_states = self.stateful and not context.ignore_states
            function = self._functions(route, reads_states, keeps_states and not gathered)
            output, final_states = function(*plan.tensors())
        if gathered:
            variables.assign(final_states)
        if length is not None and self.return_sequences:
            output = tf.nest.map_structure(
                lambda sequence: self.length_buckets.crop(sequence, length, self.go_backwards), output
            )
        return output, list(final_states)

    def _traced(self, route, reads_states, write_back, inputs, mask, initial_state, constants, training):
        """The traced computation of a route: starting states, the path's loop, write-back."""
        # `make_plan` cast the inputs to the compute dtype.
        plan = plan_lib.CallPlan(inputs, mask, initial_state, constants, training, tf.nest.flatten(inputs)[0].dtype)
        if plan.initial_state is not None:
            states = list(plan.initial_state)
        elif reads_states:
            states = self._state_variables.read(plan.dtype)
        else:
            # A static batch keeps the states' shapes static (TFLite's builtins need that).
            states = self._adapter.initial_state(plan.dynamic_batch(), plan.dtype)
        seed = self._seeds.next() if self._adapter.needs_seed(plan.training) else None
        output, final_states = paths.run(route, self._adapter, self._options, plan, states, seed)
        if write_back:
            self._state_variables.assign(final_states)
        return output, final_states


def _is_shape(value: Any) -> bool:
    return isinstance(value, tf.TensorShape) or (
        isinstance(value, (list, tuple)) and all(d is None or isinstance(d, (int, np.integer)) for d in value)
    )


def _as_shapes(input_shape: Any) -> Any:
    """`input_shape` as a `TensorShape`, or a tuple/dict nest of them; each of rank >= 3."""
    def convert(value):
        if _is_shape(value):
            shape = tf.TensorShape(value)
            if shape.rank is None or shape.rank < 3:
                raise ValueError(
                    "inputs must have rank >= 3, [batch, timesteps, features...], got shape "
                    f"{shape}"
                )
            return shape
        if isinstance(value, dict):
            return type(value)((k, convert(v)) for k, v in value.items())
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return type(value)(*(convert(v) for v in value))
        if isinstance(value, (list, tuple)):
            return type(value)(convert(v) for v in value)
        return convert(tf.TensorShape(value).as_list())

    return convert(input_shape)
