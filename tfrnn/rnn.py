"""`RNN`: the Keras `RNN` layer contract as a `tf.Module` whose time loop compiles with XLA."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrnn import bucketing
from tfrnn import composite_lstm
from tfrnn import dropout as dropout_lib
from tfrnn import fused
from tfrnn import gradients
from tfrnn import state_spec
from tfrnn import traced_calls
from tfrnn import tracing
from tfrnn import unroll as unroll_lib
from tfrnn.cell import RNNCell
from tfrnn.cell_adapter import CellAdapter
from tfrnn.stacked_cells import StackedRNNCells
from tfrnn.stateful import StateVariables


def _check_flag(value: Any, argument: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{argument} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def as_cell(cell: Any) -> Any:
    """A list of cells, or another library's stacked cells, become `StackedRNNCells`."""
    if isinstance(cell, (list, tuple)):
        return StackedRNNCells(list(cell))
    foreign_cells = getattr(cell, "cells", None)
    if not isinstance(cell, RNNCell) and isinstance(foreign_cells, (list, tuple)):
        return StackedRNNCells(list(foreign_cells))
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
    takes its replica's batch, outside it the global one (see `tfrnn.distribute`).

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
        self.return_sequences = _check_flag(return_sequences, "return_sequences")
        self.return_state = _check_flag(return_state, "return_state")
        self.go_backwards = _check_flag(go_backwards, "go_backwards")
        self.stateful = _check_flag(stateful, "stateful")
        self.unroll = _check_flag(unroll, "unroll")
        self.zero_output_for_mask = _check_flag(zero_output_for_mask, "zero_output_for_mask")
        self.jit_compile = _check_flag(jit_compile, "jit_compile")
        self.length_buckets = bucketing.as_buckets(length_buckets)
        self.cell = as_cell(cell)
        self._adapter = CellAdapter(self.cell, "cell")
        self._state_variables = (
            StateVariables(self._adapter.state_names, name="states") if self.stateful else None
        )
        self._seeds: Optional[dropout_lib.SeedStream] = None
        self._feature_shape: Optional[tf.TensorShape] = None
        self._functions = traced_calls.FunctionsByMode(self._run_mode, reduce_retracing=not self.unroll)

    # -- public surface ----------------------------------------------------------------------

    @property
    def states(self) -> list[tf.Variable]:
        """The state variables of a stateful RNN (empty before its first call)."""
        if self._state_variables is None:
            return []
        return list(self._state_variables.state_variables)

    @property
    def input_shape(self) -> Optional[tf.TensorShape]:
        """`[batch, None, *features]` once built (batch: a stateful RNN's), else `None`."""
        if self._feature_shape is None:
            return None
        batch = self._state_variables.batch_size if self.stateful else None
        return tf.TensorShape([batch, None]).concatenate(self._feature_shape)

    @property
    def state_shapes(self) -> list[tf.TensorShape]:
        """Each state's shape without the batch dimension, in the cell's order."""
        return list(self._adapter.flat_state_shapes)

    @property
    def trainable_variables(self) -> Sequence[tf.Variable]:
        """The cell's trainable variables (including those of Keras 3 cells)."""
        found = list(super().trainable_variables)
        known = {v.ref() for v in found}
        for variable in self._adapter.trainable_variables():
            if isinstance(variable, tf.Variable) and variable.ref() not in known:
                found.append(variable)
                known.add(variable.ref())
        return tuple(found)

    def build(self, input_shape: Sequence[Optional[int]]) -> None:
        """Creates the cell's variables (and a stateful RNN's states) for `input_shape`.

        Args:
          input_shape: `[batch, timesteps, features...]`; a stateful RNN needs the batch.
        """
        input_shape = tf.TensorShape(input_shape)
        if input_shape.rank is None or input_shape.rank < 3:
            raise ValueError(
                "inputs must have rank >= 3, [batch, timesteps, features...], got shape "
                f"{input_shape}"
            )
        self._adapter.build(tf.TensorShape([input_shape[0]]).concatenate(input_shape[2:]))
        if self._feature_shape is None:
            self._feature_shape = input_shape[2:]
        if self._adapter.needs_seed(True) and self._seeds is None:
            seed = getattr(self._adapter.cell, "seed", None)
            self._seeds = dropout_lib.SeedStream(seed if isinstance(seed, int) else None, name="seeds")
        if self.stateful:
            self._ensure_state_variables(input_shape[0])

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
          inputs: `[batch, timesteps, features...]`, floating.
          mask: `[batch, timesteps]` bool; `False` skips a step.
          initial_state: the states to start from, one tensor per state (`[h, c]`); for
            stacked cells flat or nested per cell (`[[h1, c1], h2]`).
          constants: tensors passed to every step of cells whose `call` takes `constants`.
          training: whether dropout applies (a Python bool).

        Returns:
          The output, or `[output, *final_states]` with `return_state=True`.
        """
        inputs = self._check_inputs(inputs)
        training = self._check_training(training)
        mask = self._check_mask(mask, inputs)
        constants = self._check_constants(constants)
        self.build(inputs.shape)
        stream = tracing.current_stream()
        if self.stateful and stream is None:
            # Streaming passes explicit states and leaves the state variables alone, so any
            # batch size will do.
            self._check_stateful_batch(inputs.shape[0])
        initial_state = self._check_initial_state(initial_state, inputs, "initial_state")
        if stream is not None:
            streamed = stream.next_initial_state()
            if streamed is not None:
                initial_state = self._check_initial_state(streamed, inputs, "streamed states")
        mode = traced_calls.choose_mode(self, inputs, mask, stream is not None)
        # Replicated states outside strategy.run (see tfrnn.distribute) live on several
        # devices, and an XLA cluster runs on one: they are gathered before the compiled
        # loop and scattered back after it.
        gathered = self.stateful and self._state_variables.global_view()
        write_back = mode.write_back
        if gathered:
            if initial_state is None:
                initial_state = self._state_variables.read(self._adapter.compute_dtype(inputs.dtype))
            mode = mode._replace(write_back=False)
        length = None
        if self.length_buckets is not None:
            inputs, mask, length = self.length_buckets.pad(inputs, mask)
        output, final_states, max_abs_cell_state = self._functions(mode)(
            inputs, mask, initial_state, constants, training
        )
        if gathered and write_back:
            self._state_variables.assign(final_states)
        tracing.report(
            tracing.RNNRecord(
                rnn=self,
                state_shapes=self.state_shapes,
                dtype=self._adapter.compute_dtype(inputs.dtype),
                final_states=list(final_states),
                fused=mode.fuse_lstm or mode.probe_cell_state,
                max_abs_cell_state=max_abs_cell_state,
            )
        )
        if length is not None and self.return_sequences:
            output = self.length_buckets.crop(output, length, self.go_backwards)
        if self.return_state:
            return [output] + list(final_states)
        return output

    def reset_state(self, states: Any = None) -> None:
        """Sets a stateful RNN's states to the cell's initial state or to `states`.

        Args:
          states: `None` for the cell's initial state (zeros unless the cell defines
            `get_initial_state`), or one array per state, `[batch, *state_shape]` each (for
            stacked cells flat or nested per cell). Nothing changes if they are invalid.
            Under a strategy `batch` is the global batch (a replica's inside `strategy.run`).
        """
        if not self.stateful:
            raise ValueError(
                "reset_state() is for stateful RNNs; this RNN was created with stateful=False"
            )
        if states is None:
            if not self._state_variables.created:
                raise ValueError(
                    "reset_state() before the first call: the RNN does not know its batch size "
                    "yet; call it once, call build(input_shape), or pass states=[...]"
                )
            batch = self._state_variables.batch_here()
            dtype = self._state_variables.state_variables[0].dtype
            self._state_variables.assign(self._adapter.initial_state(batch, dtype))
            return
        flat = self._flatten_states(states, "states")
        batch = self._state_variables.batch_here()
        if batch is None:
            batch = int(np.shape(flat[0])[0]) if np.ndim(flat[0]) >= 1 else None
        values = self._check_state_values(flat, batch, "states", exact=True)
        if not self._state_variables.created:
            self._ensure_state_variables(batch, values)
        else:
            self._state_variables.assign(values)

    # -- validation at the boundary ----------------------------------------------------------

    def _check_inputs(self, inputs: Any) -> tf.Tensor:
        if isinstance(inputs, (list, tuple)):
            raise TypeError(
                "inputs must be one tensor [batch, timesteps, features...], got a "
                f"{type(inputs).__name__} of {len(inputs)} items; pass initial states as "
                "initial_state=..."
            )
        try:
            inputs = tf.convert_to_tensor(inputs)
        except (TypeError, ValueError) as error:
            raise TypeError(f"inputs must be convertible to a tensor: {error}") from None
        if not inputs.dtype.is_floating:
            raise TypeError(
                f"inputs must be a floating tensor [batch, timesteps, features...], got "
                f"dtype {inputs.dtype.name}"
            )
        if inputs.shape.rank is None or inputs.shape.rank < 3:
            raise ValueError(
                "inputs must have rank >= 3, [batch, timesteps, features...], got shape "
                f"{state_spec.describe_shape(inputs)}"
            )
        if self.unroll and inputs.shape[1] is None:
            raise ValueError(
                "unroll=True needs a static number of timesteps, got inputs of shape "
                f"{state_spec.describe_shape(inputs)}; use unroll=False for a variable "
                "number of timesteps"
            )
        dtype = self._adapter.compute_dtype(inputs.dtype)
        if dtype.is_floating and dtype != inputs.dtype:
            inputs = tf.cast(inputs, dtype)
        return inputs

    @staticmethod
    def _check_training(training: Any) -> bool:
        if training is None:
            return False
        if isinstance(training, (bool, np.bool_)):
            return bool(training)
        if isinstance(training, (int, np.integer)) and training in (0, 1):
            return bool(training)
        static = tf.get_static_value(training) if tf.is_tensor(training) else None
        if static is not None:
            return bool(static)
        raise TypeError(
            f"training must be a Python bool, got {type(training).__name__}; dropout is "
            "decided when the function is traced"
        )

    def _check_mask(self, mask: Any, inputs: tf.Tensor) -> Optional[tf.Tensor]:
        if mask is None:
            return None
        mask = tf.convert_to_tensor(mask)
        if mask.dtype != tf.bool:
            if not mask.dtype.is_integer:
                raise TypeError(
                    f"mask must be bool [batch, timesteps], got dtype {mask.dtype.name}"
                )
            mask = tf.not_equal(mask, 0)
        expected = inputs.shape[:2]
        if mask.shape.rank != 2 or not mask.shape.is_compatible_with(expected):
            raise ValueError(
                f"mask must have shape [batch, timesteps] = {state_spec.describe_shape(tf.TensorSpec(expected))}"
                f" to match inputs of shape {state_spec.describe_shape(inputs)}, got shape "
                f"{state_spec.describe_shape(mask)}"
            )
        return mask

    def _check_constants(self, constants: Any) -> Optional[list[tf.Tensor]]:
        if constants is None:
            return None
        constants = constants if isinstance(constants, (list, tuple)) else [constants]
        if not constants:
            return None
        accepts = getattr(self.cell, "accepts_constants", self._adapter.accepts_constants)
        if not accepts:
            raise ValueError(
                f"constants were given, but the cell {self._adapter.name!r} does not take "
                "them: its call() has no `constants` argument"
            )
        return [tf.convert_to_tensor(c) for c in constants]

    def _flatten_states(self, states: Any, argument: str) -> list:
        """Flat list of state values from a tensor, a flat list, or a list nested per cell."""
        if not isinstance(states, (list, tuple)):
            return [states]
        groups = getattr(self.cell, "state_groups", None)
        nested = any(isinstance(s, (list, tuple)) for s in states)
        if nested and callable(groups):
            sizes = [len(s) if isinstance(s, (list, tuple)) else 1 for s in states]
            if sizes != groups():
                raise ValueError(
                    f"{argument} nested per cell must have {groups()} states per cell, got "
                    f"{sizes}"
                )
        return tf.nest.flatten(list(states))

    def _state_error(self, argument: str, batch: Any, given: list) -> ValueError:
        shapes = self._adapter.flat_state_shapes
        names = ", ".join(self._adapter.state_names)
        noun = "tensor" if len(shapes) == 1 else "tensors"
        note = self._state_variables.batch_note() if self._state_variables is not None else ""
        return ValueError(
            f"{argument} must have {len(shapes)} {noun} ({names}) of shape "
            f"{state_spec.format_state_shapes(shapes, 'batch' if batch is None else batch)}, "
            f"got {state_spec.describe(given)}{note}"
        )

    def _check_state_values(self, flat: list, batch: Any, argument: str, exact: bool) -> list:
        shapes = self._adapter.flat_state_shapes
        if len(flat) != len(shapes):
            raise self._state_error(argument, batch, flat)
        values = []
        for value, shape in zip(flat, shapes):
            tensor = tf.convert_to_tensor(value)
            expected = tf.TensorShape([batch]).concatenate(shape)
            matches = (
                tensor.shape == expected if exact else tensor.shape.is_compatible_with(expected)
            )
            if not matches or not (tensor.dtype.is_floating or tensor.dtype.is_integer):
                raise self._state_error(argument, batch, flat)
            values.append(tensor)
        return values

    def _check_initial_state(self, initial_state: Any, inputs: tf.Tensor, argument: str):
        if initial_state is None:
            return None
        flat = self._flatten_states(initial_state, argument)
        values = self._check_state_values(flat, inputs.shape[0], argument, exact=False)
        dtype = self._adapter.compute_dtype(inputs.dtype)
        return [tf.cast(v, dtype) if v.dtype != dtype else v for v in values]

    def _ensure_state_variables(self, batch: Any, values: Optional[list] = None) -> None:
        if self._state_variables.created:
            return
        if batch is None:
            raise ValueError(
                "a stateful RNN needs a static batch size, got inputs with an unknown batch "
                "size; give the batch in the input shape (e.g. a tf.function input_signature "
                "or tf_keras.Input(batch_size=...))"
            )
        # Under a strategy `batch` is a replica's inside strategy.run, else the global one;
        # a global batch that does not divide among the replicas is an error here.
        layout = self._state_variables.layout_for(int(batch))
        # The variables are created eagerly (init_scope), so are their initial values.
        with tf.init_scope():
            dtype = self._adapter.compute_dtype(tf.float32)
            initial = self._adapter.initial_state(layout.replica_batch, dtype)
        self._state_variables.create(initial, layout)
        if values is not None:
            self._state_variables.assign(values)

    def _check_stateful_batch(self, batch: Optional[int]) -> None:
        misplaced = self._state_variables.misplaced_replica_call()
        if misplaced is not None:
            raise ValueError(misplaced)
        expected = self._state_variables.batch_here()
        layout = self._state_variables.layout
        if batch != expected and layout.replicas == 1:
            raise ValueError(
                f"this stateful RNN holds states for batch size {expected}, got inputs with "
                f"batch size {batch}; feed batches of {expected}, or create a new RNN for "
                "another batch size"
            )
        if batch != expected:
            where = (
                "outside strategy.run, where a call takes the global batch"
                if self._state_variables.global_view()
                else "inside strategy.run, where a call takes its replica's slice of the batch"
            )
            raise ValueError(
                f"this stateful RNN holds states for a {layout.describe()}, got inputs with "
                f"batch size {batch} {where}, {expected}; feed global batches of "
                f"{layout.global_batch} (strategy.experimental_distribute_dataset gives each "
                f"replica {layout.replica_batch} rows of them)"
            )

    # -- the traced computation --------------------------------------------------------------

    def _run_mode(self, mode: traced_calls.Mode, inputs, mask, initial_state, constants, training):
        """`(output, final_states, largest |c| or None)` of one call, as `mode` says."""
        if mode.fuse_lstm:
            output = composite_lstm.fused_lstm(
                self.cell, inputs, initial_state, self.go_backwards, self.return_sequences
            )
            return output, [], None
        if mode.probe_cell_state:
            output, max_c = composite_lstm.probe(
                self.cell, inputs, initial_state, self.go_backwards, self.return_sequences
            )
            return output, [], max_c
        if mode.tflite or mode.streaming:
            output, final_states = self._run_plain(
                inputs, mask, initial_state, constants, mode.streaming
            )
        else:
            output, final_states = self._run(inputs, mask, initial_state, constants, training)
        if self.stateful and mode.write_back:
            self._state_variables.assign(final_states)
        return output, final_states, None

    def _run_plain(self, inputs, mask, initial_state, constants, streaming: bool):
        """Inference in plain ops: for TFLite (see `tfrnn.tracing`) and for streaming.

        The generic loop with its outputs in a dense tensor (no TensorArray), so a dynamic
        batch and time stay builtin-only in TFLite; a single step (the streaming case) or
        `unroll` with a static time axis is unrolled, which needs no `WHILE` at all.

        Streaming one step at a time must give what the whole sequence gives, also at masked
        steps, where the output repeats the last unmasked output: a loop value, not a state.
        Where the cell's output is one of its states (tfrnn's built-in cells: h), that state
        is the last unmasked output, so the loop starts from it.
        """
        states = self._start_states(inputs, initial_state)
        output_index = self._adapter.output_state_index
        initial_output = None
        if streaming and output_index is not None:
            initial_output = states[output_index]
        return self._loop(
            inputs,
            mask,
            states,
            constants,
            None,
            False,
            unroll=inputs.shape[1] is not None and (self.unroll or inputs.shape[1] == 1),
            dense_outputs=True,
            initial_output=initial_output,
        )

    def _start_states(self, inputs: tf.Tensor, initial_state: Optional[list]) -> list:
        """The states a call starts from: given, stored (stateful), or the cell's initial ones.

        A static batch keeps the initial states' shapes static, which TFLite's builtins need
        (a dynamic one would need a shape-refining Identity, a Flex op).
        """
        dtype = self._adapter.compute_dtype(inputs.dtype)
        if initial_state is not None:
            return list(initial_state)
        if self.stateful:
            return self._state_variables.read(dtype)
        batch = inputs.shape[0] if inputs.shape[0] is not None else tf.shape(inputs)[0]
        return self._adapter.initial_state(batch, dtype)

    def _output_spec(self, inputs: tf.Tensor) -> tf.TensorSpec:
        adapter = self._adapter
        return tf.TensorSpec(
            tf.TensorShape([inputs.shape[0]]).concatenate(adapter.output_shape),
            adapter.compute_dtype(inputs.dtype),
        )

    def _loop(self, inputs, mask, states, constants, sequence_constants, training, **options):
        """The generic time loop over the cell (`tfrnn.unroll.rnn_loop` with `options`).

        Built-in cells project the inputs of all steps with one matmul before the loop.
        """
        adapter = self._adapter
        if adapter.projects_inputs:
            sequence = adapter.project_inputs(inputs, sequence_constants)

            def step(x_t, prev_states):
                return adapter.step_projected(x_t, prev_states, sequence_constants)

        else:
            sequence = inputs

            def step(x_t, prev_states):
                return adapter.call_step(
                    x_t,
                    prev_states,
                    constants=constants,
                    training=training,
                    sequence_constants=sequence_constants,
                )

        result = unroll_lib.rnn_loop(
            step,
            sequence,
            states,
            output_spec=self._output_spec(inputs),
            mask=mask,
            go_backwards=self.go_backwards,
            zero_output_for_mask=self.zero_output_for_mask,
            return_sequences=self.return_sequences,
            **options,
        )
        output = result.outputs if self.return_sequences else result.last_output
        return output, result.final_states

    def _run(self, inputs, mask, initial_state, constants, training):
        adapter = self._adapter
        states = self._start_states(inputs, initial_state)
        seed = self._seeds.next() if adapter.needs_seed(training) else None
        sequence_constants = adapter.sequence_constants(tf.shape(inputs)[0], training, seed)
        output_spec = self._output_spec(inputs)

        def loop(inputs, states, constants, sequence_constants):
            return self._loop(
                inputs, mask, states, constants, sequence_constants, training, unroll=self.unroll
            )

        fused_spec = None if self.unroll else adapter.fused_spec(sequence_constants)
        if fused_spec is not None:
            output, final_states = fused.fused_rnn(
                fused_spec,
                adapter.cell.apply_input_dropout(inputs, sequence_constants),
                states,
                output_spec=output_spec,
                mask=mask,
                go_backwards=self.go_backwards,
                zero_output_for_mask=self.zero_output_for_mask,
                return_sequences=self.return_sequences,
            )
        elif self.jit_compile and not self.unroll:
            output, final_states = _differentiable(
                loop, inputs, states, constants, sequence_constants
            )
        else:
            output, final_states = loop(inputs, states, constants, sequence_constants)
        return output, final_states


def _differentiable(loop, inputs, states, constants, sequence_constants):
    """Runs `loop` under `recompute_gradient`, passing only floating tensors through it."""
    args = {"inputs": inputs, "states": states, "constants": constants or [], "seq": sequence_constants}
    flat = tf.nest.flatten(args)
    floating = [i for i, t in enumerate(flat) if t is not None and t.dtype.is_floating]

    def fn(*tensors):
        values = list(flat)
        for index, tensor in zip(floating, tensors):
            values[index] = tensor
        a = tf.nest.pack_sequence_as(args, values)
        return loop(a["inputs"], a["states"], a["constants"] or None, a["seq"])

    return gradients.recompute_gradient(fn, [flat[i] for i in floating])
