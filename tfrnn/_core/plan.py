"""`CallPlan`: one call of a `tfrnn.RNN`, validated once at the boundary.

`make_plan` checks a call's arguments against the cell (through its `CellAdapter`) and
returns a small typed plan, or raises a `ValueError`/`TypeError` that names the argument and
shows what was expected and what was received, before any state is touched. What runs the
call (`tfrnn._core.paths`) reads only the plan.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrnn._core import state_spec


@dataclasses.dataclass(frozen=True)
class CallPlan:
    """A validated call: what a path runs on."""

    inputs: Any
    """`[batch, timesteps, features...]`, in the compute dtype (ragged inputs padded); or a
    nest (tuple, namedtuple, dict) of such tensors for a cell that takes nested inputs."""
    mask: Optional[tf.Tensor]
    """`[batch, timesteps]` bool, or `None` (ragged inputs: their row lengths)."""
    initial_state: Optional[list]
    """The explicit initial states, flat, in the compute dtype; `None`: stored or initial."""
    constants: Optional[list]
    training: bool
    dtype: tf.DType
    """The compute dtype of the outputs and states."""
    row_lengths: Optional[tf.Tensor] = None
    """`[batch]` int64: the inputs were a `tf.RaggedTensor` with these row lengths."""

    @property
    def flat_inputs(self) -> list[tf.Tensor]:
        return [self.inputs] if isinstance(self.inputs, tf.Tensor) else tf.nest.flatten(self.inputs)

    @property
    def batch(self) -> Optional[int]:
        """The static batch size, `None` if unknown while tracing."""
        return self.flat_inputs[0].shape[0]

    @property
    def timesteps(self) -> Optional[int]:
        """The static number of timesteps, `None` if unknown while tracing."""
        return self.flat_inputs[0].shape[1]

    def dynamic_batch(self) -> Any:
        """The batch size: static where known, else a scalar tensor."""
        return self.batch if self.batch is not None else tf.shape(self.flat_inputs[0])[0]

    @property
    def input_shape(self) -> Any:
        """`[batch, timesteps, features...]` (a nest of them for nested inputs)."""
        if isinstance(self.inputs, tf.Tensor):
            return self.inputs.shape
        return tf.nest.map_structure(lambda x: x.shape, self.inputs)

    def tensors(self) -> tuple:
        """The plan's arguments for a traced function (`from_tensors` rebuilds the plan)."""
        return self.inputs, self.mask, self.initial_state, self.constants, self.training

    def ragged_output(self, output: tf.Tensor, go_backwards: bool) -> Any:
        """A returned sequence as ragged as the inputs were (as tf-keras returns it).

        Backwards, the sequence is in processing order, its padding first: each row keeps
        its real steps, still in processing order.
        """
        if self.row_lengths is None:
            return output

        def ragged(sequence):
            if not go_backwards:
                return tf.RaggedTensor.from_tensor(sequence, lengths=self.row_lengths)
            rows = tf.RaggedTensor.from_tensor(tf.reverse(sequence, [1]), lengths=self.row_lengths)
            return tf.reverse(rows, [1])

        return tf.nest.map_structure(ragged, output)


def make_plan(
    adapter: Any,
    inputs: Any,
    mask: Any = None,
    initial_state: Any = None,
    constants: Any = None,
    training: Any = False,
    *,
    unroll: bool = False,
    streamed_state: Optional[list] = None,
    state_note: str = "",
) -> CallPlan:
    """Validates one call of an RNN whose cell `adapter` views; see the module docstring.

    Args:
      adapter: the cell's `CellAdapter`.
      inputs, mask, initial_state, constants, training: the call's arguments.
      unroll: the RNN unrolls its loop (needs a static number of timesteps).
      streamed_state: explicit states a streamed trace starts this call from (they win).
      state_note: appended to state errors (how a replicated batch splits).
    """
    for argument, value in (("mask", mask), ("initial_state", initial_state), ("constants", constants)):
        if value is not None:
            for item in tf.nest.flatten(value):
                check_not_symbolic(item, argument)
    inputs, mask, row_lengths = _unragged(inputs, mask, unroll)
    inputs, dtype = _check_inputs(adapter, inputs, unroll)
    training = _check_training(training)
    mask = _check_mask(mask, tf.nest.flatten(inputs)[0])
    constants = _check_constants(adapter, constants)
    initial_state = _cast_states(
        _check_initial_state(adapter, initial_state, inputs, "initial_state", state_note), dtype
    )
    if streamed_state is not None:
        initial_state = _cast_states(
            _check_initial_state(adapter, streamed_state, inputs, "streamed states", state_note),
            dtype,
        )
    return CallPlan(inputs, mask, initial_state, constants, training, dtype, row_lengths)


def _unragged(inputs: Any, mask: Any, unroll: bool):
    """A `tf.RaggedTensor` `[batch, (timesteps), features...]` as padded inputs and a mask.

    The results equal those of the padded inputs with the mask of their row lengths.
    """
    if not isinstance(inputs, tf.RaggedTensor):
        return inputs, mask, None
    if inputs.ragged_rank != 1:
        raise ValueError(
            "inputs must be ragged in the time axis only, [batch, (timesteps), features...] "
            f"with ragged_rank 1, got a RaggedTensor of ragged_rank {inputs.ragged_rank} "
            f"(shape {inputs.shape}); a ragged feature axis cannot be fed to a cell"
        )
    if mask is not None:
        raise ValueError(
            "mask must be None for ragged inputs, got a mask: the row lengths of a "
            "RaggedTensor are its mask (pad the inputs to pass a mask of your own)"
        )
    if unroll:
        raise ValueError(
            "unroll=True needs a static number of timesteps, got ragged inputs (a ragged "
            "time axis); use unroll=False for a variable number of timesteps"
        )
    row_lengths = inputs.row_lengths()
    padded = inputs.to_tensor()
    return padded, tf.sequence_mask(row_lengths, tf.shape(padded)[1]), row_lengths


_KERAS_TENSORS = {
    "keras": "a Keras 3 symbolic tensor (keras.Input): in a Keras 3 model use tfrnn.keras.RNN "
    "(or tfrnn.keras.LSTM, GRU, SimpleRNN)",
    "tf_keras": "a tf-keras symbolic tensor (tf_keras.Input): in a tf-keras model use "
    "tfrnn.tf_keras.RNN (or tfrnn.tf_keras.LSTM, GRU, SimpleRNN)",
}


def check_not_symbolic(value: Any, argument: str) -> None:
    """A `TypeError` for a Keras symbolic tensor: the tf.Module RNN runs on real tensors."""
    cls = type(value)
    package = cls.__module__.split(".")[0]
    if package in _KERAS_TENSORS and "KerasTensor" in cls.__name__:
        raise TypeError(
            f"{argument} is {_KERAS_TENSORS[package]}; tfrnn.RNN is a tf.Module that runs on "
            "tensors, not a Keras layer"
        )


def _check_inputs(adapter: Any, inputs: Any, unroll: bool) -> tuple[Any, tf.DType]:
    """The inputs (one tensor, or a tuple/namedtuple/dict nest of them) in the compute dtype."""
    if isinstance(inputs, list):
        raise TypeError(
            "inputs must be one tensor [batch, timesteps, features...] (or a tuple, namedtuple "
            f"or dict of them for a cell with nested inputs), got a list of {len(inputs)} items; "
            "pass initial states as initial_state=..."
        )
    nested = isinstance(inputs, (tuple, dict))
    if not nested:
        check_not_symbolic(inputs, "inputs")
        single = _check_input(inputs, unroll, "inputs")
        dtype = adapter.compute_dtype(single.dtype)
        if dtype.is_floating and single.dtype != dtype:
            single = tf.cast(single, dtype)
        return single, dtype
    flat = tf.nest.flatten(inputs)
    for item in flat:
        check_not_symbolic(item, "inputs")
    if not flat:
        raise ValueError(f"inputs must hold at least one tensor, got {inputs!r}")
    flat = [_check_input(item, unroll, f"inputs[{i}]") for i, item in enumerate(flat)]
    leading = flat[0].shape[:2]
    for index, item in enumerate(flat[1:], 1):
        if not item.shape[:2].is_compatible_with(leading):
            raise ValueError(
                f"nested inputs must share [batch, timesteps] = {state_spec.describe_shape(tf.TensorSpec(leading))}"
                f" (inputs[0]), got inputs[{index}] of shape {state_spec.describe_shape(item)}"
            )
    dtype = adapter.compute_dtype(flat[0].dtype)
    if dtype.is_floating:
        flat = [tf.cast(x, dtype) if x.dtype != dtype else x for x in flat]
    return (tf.nest.pack_sequence_as(inputs, flat) if nested else flat[0]), dtype


def _check_input(inputs: Any, unroll: bool, argument: str) -> tf.Tensor:
    try:
        inputs = tf.convert_to_tensor(inputs)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{argument} must be convertible to a tensor: {error}") from None
    if not inputs.dtype.is_floating:
        raise TypeError(
            f"{argument} must be a floating tensor [batch, timesteps, features...], got "
            f"dtype {inputs.dtype.name}"
        )
    if inputs.shape.rank is None or inputs.shape.rank < 3:
        raise ValueError(
            f"{argument} must have rank >= 3, [batch, timesteps, features...], got shape "
            f"{state_spec.describe_shape(inputs)}"
        )
    if unroll and inputs.shape[1] is None:
        raise ValueError(
            "unroll=True needs a static number of timesteps, got inputs of shape "
            f"{state_spec.describe_shape(inputs)}; use unroll=False for a variable "
            "number of timesteps"
        )
    return inputs


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


def _check_mask(mask: Any, inputs: tf.Tensor) -> Optional[tf.Tensor]:
    if mask is None:
        return None
    mask = tf.convert_to_tensor(mask)
    if mask.dtype != tf.bool:
        # 0/1 masks of numbers work as in tf-keras: non-zero means "use this step".
        if not (mask.dtype.is_integer or mask.dtype.is_floating):
            raise TypeError(
                f"mask must be bool (or 0/1 numbers) [batch, timesteps], got dtype {mask.dtype.name}"
            )
        mask = tf.not_equal(mask, tf.zeros([], mask.dtype))
    expected = inputs.shape[:2]
    if mask.shape.rank != 2 or not mask.shape.is_compatible_with(expected):
        raise ValueError(
            "mask must have shape [batch, timesteps] = "
            f"{state_spec.describe_shape(tf.TensorSpec(expected))} to match inputs of shape "
            f"{state_spec.describe_shape(inputs)}, got shape {state_spec.describe_shape(mask)}"
        )
    return mask


def _check_constants(adapter: Any, constants: Any) -> Optional[list[tf.Tensor]]:
    if constants is None:
        return None
    constants = constants if isinstance(constants, (list, tuple)) else [constants]
    if not constants:
        return None
    accepts = getattr(adapter.cell, "accepts_constants", adapter.accepts_constants)
    if not accepts:
        raise ValueError(
            f"constants were given, but the cell {adapter.name!r} does not take "
            "them: its call() has no `constants` argument"
        )
    return [tf.convert_to_tensor(c) for c in constants]


def flatten_states(adapter: Any, states: Any, argument: str) -> list:
    """Flat state values from a tensor, a flat list, or a list nested per cell (stacks)."""
    if not isinstance(states, (list, tuple)):
        return [states]
    groups = adapter.state_groups()
    nested = any(isinstance(s, (list, tuple)) for s in states)
    if nested and groups is not None:
        sizes = [len(tf.nest.flatten(s)) for s in states]
        if sizes != groups:
            raise ValueError(
                f"{argument} nested per cell must have {groups} states per cell, got {sizes}"
            )
    return tf.nest.flatten(list(states))


def state_error(adapter: Any, argument: str, batch: Any, given: Sequence, note: str = "") -> ValueError:
    """`argument must have N tensors (h, c) of shape [batch, 4], [batch, 4], got ...`."""
    shapes = adapter.flat_state_shapes
    names = ", ".join(adapter.state_names)
    noun = "tensor" if len(shapes) == 1 else "tensors"
    return ValueError(
        f"{argument} must have {len(shapes)} {noun} ({names}) of shape "
        f"{state_spec.format_state_shapes(shapes, 'batch' if batch is None else batch)}, "
        f"got {state_spec.describe(list(given))}{note}"
    )


def check_state_values(
    adapter: Any, flat: list, batch: Any, argument: str, exact: bool, note: str = ""
) -> list[tf.Tensor]:
    """The flat states as tensors, after checking their count, shapes and dtypes.

    `exact`: shapes must equal `[batch, *state_shape]` (else only be compatible with it).
    """
    shapes = adapter.flat_state_shapes
    if len(flat) != len(shapes):
        raise state_error(adapter, argument, batch, flat, note)
    values = []
    for value, shape in zip(flat, shapes):
        tensor = tf.convert_to_tensor(value)
        expected = tf.TensorShape([batch]).concatenate(shape)
        matches = tensor.shape == expected if exact else tensor.shape.is_compatible_with(expected)
        if not matches or not (tensor.dtype.is_floating or tensor.dtype.is_integer):
            raise state_error(adapter, argument, batch, flat, note)
        values.append(tensor)
    return values


def _check_initial_state(adapter, initial_state, inputs, argument, note) -> Optional[list]:
    if initial_state is None:
        return None
    flat = flatten_states(adapter, initial_state, argument)
    batch = tf.nest.flatten(inputs)[0].shape[0]
    return check_state_values(adapter, flat, batch, argument, exact=False, note=note)


def _cast_states(values: Optional[list], dtype: tf.DType) -> Optional[list]:
    if values is None:
        return None
    return [tf.cast(v, dtype) if v.dtype != dtype else v for v in values]
