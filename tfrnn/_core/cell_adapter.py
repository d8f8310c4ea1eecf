"""`CellAdapter`: one view of every kind of cell the RNN accepts.

A cell may be a `tfrnn.RNNCell`, a plain `tf.Module` or object with a `call(inputs, states)`
method (or a `__call__`), a `tf_keras.layers.Layer` (like the `MinimalRNNCell` of the Keras
docs), or a Keras 3 `keras.Layer` on the TensorFlow backend. The adapter answers, for all of
them: the flat list of state shapes, the output shape and dtype, how to build, how to get the
initial state, which keyword arguments `call` takes, and how to run one step.

Keras cells with `dropout`/`recurrent_dropout` draw their masks from their own random
generators and cache them across steps. For them the adapter replaces the mask getters, while
a step is traced, with ones that derive the masks from a seed tensor drawn once per sequence:
the masks stay constant over the sequence (Keras' rule) and a compiled backward pass that
recomputes the forward pass sees the same masks. This is duck-typed, so only the Keras
adapter module imports `tf_keras`.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Optional

import tensorflow as tf

from tfrnn._core import dropout as dropout_lib
from tfrnn._core import state_spec
from tfrnn._core import variables as variables_lib
from tfrnn._core.arguments import accepts_argument
from tfrnn._core.builtin_cell import BuiltinCell
from tfrnn.cell import RNNCell


class CellAdapter:
    """Uniform access to a cell; see the module docstring.

    What the cell says of its states and outputs (`state_size`, `output_size`) is read when
    it is needed and kept once the cell is built, so cells that set them in `build()` (as
    tf-keras allows) work.

    Args:
      cell: the cell object.
      argument: how error messages name it (`"cell"`, `"cells[1]"`).
    """

    def __init__(self, cell: Any, argument: str = "cell"):
        self.cell = cell
        self.argument = argument
        kind = type(cell).__name__
        signature_fn = getattr(cell, "call", None)
        if not callable(signature_fn):
            signature_fn = cell if callable(cell) and not isinstance(cell, type) else None
        if signature_fn is None:
            raise TypeError(
                f"{argument} must have a call(inputs, states) method or be callable, "
                f"got {kind} which has neither"
            )
        self.is_tfrnn = isinstance(cell, RNNCell)
        self.is_layer = not self.is_tfrnn and hasattr(cell, "build") and hasattr(cell, "built")
        if getattr(cell, "state_size", None) is None and not callable(getattr(cell, "build", None)):
            raise self._no_state_size()
        # Keras layers are called through __call__ (autocasting, name scopes); tfrnn cells
        # and plain objects through `call`, which is what their signature describes.
        if self.is_layer and callable(cell):
            self._call_fn = cell
        else:
            self._call_fn = signature_fn
        self.accepts_constants = accepts_argument(signature_fn, "constants")
        self.accepts_training = accepts_argument(signature_fn, "training")
        self.accepts_dropout_masks = self.is_tfrnn and accepts_argument(
            signature_fn, "dropout_masks"
        )
        self.projects_inputs = self.is_tfrnn and callable(getattr(cell, "project_inputs", None))
        self._built_input_shape: Optional[Any] = None
        self._description: Optional[tuple] = None
        self._has_fast_loop: dict = {}
        state_size = getattr(cell, "state_size", None)
        if state_size is not None and not callable(getattr(cell, "flat_state_shapes", None)):
            # Validated now where it is known (a cell may also set it in build()).
            self._foreign_groups() if self.is_foreign_stack else state_spec.flat_state_shapes(state_size, argument)

    def _no_state_size(self) -> TypeError:
        return TypeError(
            f"{self.argument} must define state_size (an int, a TensorShape, or a list with "
            f"one entry per state), got {type(self.cell).__name__} which has none"
        )

    # -- description -------------------------------------------------------------------------

    def _describe(self) -> tuple:
        """`(flat state shapes, output shape(s) or None)`, kept once the cell is built."""
        if self._description is not None:
            return self._description
        cell = self.cell
        if callable(getattr(cell, "flat_state_shapes", None)):
            shapes = list(cell.flat_state_shapes())
        elif getattr(cell, "state_size", None) is None:
            raise self._no_state_size()
        elif self.is_foreign_stack:
            shapes = [s for group in self._foreign_groups() for s in group]
        else:
            shapes = state_spec.flat_state_shapes(cell.state_size, self.argument)
        output_size = getattr(cell, "output_size", None)
        if output_size is not None:
            output = state_spec.output_shapes(output_size, self.argument)
        else:
            output = shapes[0] if shapes else None
        description = (shapes, output)
        if self._built_input_shape is not None or getattr(cell, "built", False):
            self._description = description
        return description

    @property
    def flat_state_shapes(self) -> list[tf.TensorShape]:
        """Each state's shape without the batch dimension, flat, in the cell's order."""
        return self._describe()[0]

    @property
    def output_shape(self) -> Any:
        """One step's output shape without the batch (a nest of them for nested outputs)."""
        output = self._describe()[1]
        if output is None:
            raise TypeError(
                f"{self.argument} must define output_size when it has no states (its "
                f"state_size is {self.cell.state_size!r}); set it in __init__ or build()"
            )
        return output

    @property
    def state_names(self) -> list[str]:
        names = getattr(self.cell, "state_names", None)
        if callable(names):
            names = names()
        if names is not None and self._description is None and getattr(self.cell, "state_size", 0) is None:
            # Sizes set in build() (the Keras adapters' ConvLSTM cells): a stateful RNN names
            # its variables when it is created, before any build.
            return list(names)
        count = len(self.flat_state_shapes)
        if names is not None and len(names) == count:
            return list(names)
        return [f"state_{i}" for i in range(count)]

    @property
    def output_state_index(self) -> Optional[int]:
        """Which flat state always equals the cell's output, if one does (None: unknown).

        tfrnn's built-in cells output their state h; stacked cells output the last cell's.
        """
        if isinstance(self.cell, BuiltinCell):
            return 0
        adapters = getattr(self.cell, "adapters", None)
        if self.is_tfrnn and isinstance(adapters, list) and adapters:
            last = adapters[-1].output_state_index
            if last is not None:
                return sum(len(a.flat_state_shapes) for a in adapters[:-1]) + last
        return None

    @property
    def is_foreign_stack(self) -> bool:
        """Another library's stacked cells (tf-keras', Keras 3's): run as they are."""
        return not self.is_tfrnn and isinstance(getattr(self.cell, "cells", None), (list, tuple))

    def _foreign_groups(self) -> list[list[tf.TensorShape]]:
        # A stack's state_size has one entry per cell, in the order its call takes them
        # (tf-keras' reverse_state_order reverses both).
        return [
            state_spec.flat_state_shapes(size, f"{self.argument}.cells")
            for size in self.cell.state_size
        ]

    def state_groups(self) -> Optional[list[int]]:
        """How many states each cell of a stack has (`None` for a single cell)."""
        groups = getattr(self.cell, "state_groups", None)
        if self.is_tfrnn and callable(groups):
            return groups()
        if self.is_foreign_stack:
            return [len(group) for group in self._foreign_groups()]
        return None

    def pack_states(self, flat: list) -> Any:
        """The flat states as the cell's `call` takes them: a list, its namedtuple, or one
        list per cell for another library's stack."""
        if self.is_foreign_stack:
            packed, offset = [], 0
            for count in self.state_groups():
                packed.append(list(flat[offset : offset + count]))
                offset += count
            return packed
        state_size = getattr(self.cell, "state_size", None)
        if hasattr(state_size, "_fields") and len(state_size) == len(flat):
            return type(state_size)(*flat)
        return list(flat)

    @property
    def name(self) -> str:
        return getattr(self.cell, "name", None) or type(self.cell).__name__

    def compute_dtype(self, inputs_dtype: tf.DType) -> tf.DType:
        """The dtype of the cell's outputs and states for inputs of `inputs_dtype`."""
        if self.is_tfrnn:
            output_dtype = getattr(self.cell, "output_dtype", None)
            return output_dtype(inputs_dtype) if callable(output_dtype) else self.cell.compute_dtype
        dtype = getattr(self.cell, "compute_dtype", None)
        return tf.as_dtype(dtype) if dtype else inputs_dtype

    @property
    def variable_dtype(self) -> tf.DType:
        """The dtype the cell keeps its variables in (a stateful RNN's states too)."""
        dtype = getattr(self.cell, "variable_dtype", None) or getattr(self.cell, "dtype", None)
        try:
            dtype = tf.as_dtype(dtype)
        except TypeError:
            return tf.float32
        return dtype if dtype.is_floating else tf.float32

    def uses_keras_dropout(self) -> bool:
        """Whether this is a Keras cell with dropout that the adapter must seed."""
        rates = (getattr(self.cell, "dropout", 0) or 0, getattr(self.cell, "recurrent_dropout", 0) or 0)
        keras_getters = hasattr(self.cell, "get_dropout_mask_for_cell") or hasattr(
            self.cell, "get_dropout_mask"
        )
        return not self.is_tfrnn and keras_getters and any(r > 0 for r in rates)

    def needs_seed(self, training: bool) -> bool:
        """Whether a step with this `training` flag draws random numbers."""
        if self.is_tfrnn:
            return self.cell.uses_dropout(training)
        return training and self.uses_keras_dropout()

    def trainable_variables(self) -> list[tf.Variable]:
        """The cell's trainable `tf.Variable`s, including those behind Keras 3 variables."""
        variables = getattr(self.cell, "trainable_variables", None)
        if variables is None:
            variables = getattr(self.cell, "trainable_weights", [])
        return variables_lib.unique(variables)

    # -- building ----------------------------------------------------------------------------

    def build(self, step_input_shape: Any) -> None:
        """Creates the cell's variables for steps of `step_input_shape` (`[batch, ...]`).

        `step_input_shape` is a nest of shapes for nested inputs.
        """
        if self.is_tfrnn:
            self.cell.maybe_build(tf.TensorShape(step_input_shape))
            return
        nested = _is_shape_nest(step_input_shape)
        flat = tf.nest.flatten(step_input_shape) if nested else [tf.TensorShape(step_input_shape)]
        if self._built_input_shape is not None:
            built = self._built_input_shape
            if len(built) != len(flat) or not all(b[1:].is_compatible_with(f[1:]) for b, f in zip(built, flat)):
                raise ValueError(
                    f"inputs have features of shape {_features(flat)}, but {self.argument} "
                    f"({self.name}) was built for features of shape {_features(built)}"
                )
            return
        if self.is_layer and not self.cell.built:
            # tf-keras names weights after the enclosing scope (as its RNN layer does);
            # Keras 3 layers name their own.
            scope = (
                tf.name_scope(self.name)
                if isinstance(self.cell, tf.Module)
                else contextlib.nullcontext()
            )
            # As tf-keras passes them: tuples (in the inputs' nest for nested inputs).
            to_tuple = lambda shape: tuple(tf.TensorShape(shape).as_list())  # noqa: E731
            shape = tf.nest.map_structure(to_tuple, step_input_shape) if nested else to_tuple(flat[0])
            with tf.init_scope(), scope:
                self.cell.build(shape)
            self.cell.built = True
        self._built_input_shape = flat

    # -- states ------------------------------------------------------------------------------

    def initial_state(self, batch_size: Any, dtype: tf.DType) -> list[tf.Tensor]:
        """The flat initial states: `get_initial_state` where the cell has one, else zeros."""
        get_initial_state = getattr(self.cell, "get_initial_state", None)
        if not callable(get_initial_state):
            return state_spec.zeros(self.flat_state_shapes, batch_size, dtype)
        kwargs = {}
        if accepts_argument(get_initial_state, "batch_size"):
            kwargs["batch_size"] = batch_size
        if accepts_argument(get_initial_state, "dtype"):
            kwargs["dtype"] = dtype
        states = [tf.convert_to_tensor(s) for s in tf.nest.flatten(get_initial_state(**kwargs))]
        if len(states) != len(self.flat_state_shapes):
            raise ValueError(
                f"{self.argument}.get_initial_state returned {state_spec.describe(states)}, "
                f"but its state_size gives {len(self.flat_state_shapes)} states of shape "
                f"{state_spec.format_state_shapes(self.flat_state_shapes)}"
            )
        return [tf.cast(s, dtype) if s.dtype != dtype else s for s in states]

    # -- running -----------------------------------------------------------------------------

    def sequence_dropout(self, batch_size: Any, training: bool, seed: Optional[tf.Tensor]):
        """What dropout draws once per sequence and every step reuses, or `None`.

        For tfrnn cells their dropout masks (`get_dropout_masks`); for Keras cells a seed
        their mask getters are made to derive the masks from (see the module docstring).
        """
        if seed is None or not self.needs_seed(training):
            return None
        if self.is_tfrnn:
            return self.cell.get_dropout_masks(batch_size, training, seed=seed)
        return tf.cast(seed, tf.int64)

    def call_step(
        self,
        inputs_t: tf.Tensor,
        states: list[tf.Tensor],
        *,
        constants: Optional[list[tf.Tensor]] = None,
        training: bool = False,
        sequence_dropout: Any = None,
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One step of the cell: `(output_t, flat new states)`."""
        kwargs = {}
        if constants:
            kwargs["constants"] = constants
        if self.accepts_training:
            kwargs["training"] = training
        if self.accepts_dropout_masks and sequence_dropout is not None:
            kwargs["dropout_masks"] = sequence_dropout
        seeded = sequence_dropout if self.uses_keras_dropout() and training else None
        with _seeded_keras_dropout(self.cell, seeded):
            output, new_states = self._call_fn(inputs_t, self.pack_states(states), **kwargs)
        return output, tf.nest.flatten(new_states)

    def step_projected(
        self, projected_t: tf.Tensor, states: list[tf.Tensor], sequence_dropout: Any = None
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One step of a built-in cell from inputs already projected by `project_inputs`."""
        return self.cell.step(projected_t, states, sequence_dropout)

    def fast_loop_spec(self, training: bool):
        """The built-in cell's `FastLoopSpec` (`_core.fast_loop`) for a call, or `None`.

        `None`: the cell has none (custom cells, GRU with `reset_after=False`), or the call's
        dropout needs what the fast loop does not do (recurrent dropout).
        """
        fast_loop_spec = getattr(self.cell, "fast_loop_spec", None) if self.is_tfrnn else None
        if not callable(fast_loop_spec) or not self.cell.fast_loop_ok(training):
            return None
        return fast_loop_spec()

    def has_fast_loop(self, training: bool) -> bool:
        """Whether `fast_loop_spec(training)` is a spec (cached: a cell's kind does not change)."""
        if training not in self._has_fast_loop:
            self._has_fast_loop[training] = self.fast_loop_spec(training) is not None
        return self._has_fast_loop[training]

    def recurrent_macs(self) -> int:
        """Multiply-adds of one batch row's recurrent matmul per step (built-in cells; else 0)."""
        return math.prod(self._recurrent_kernel_shape() or [0])

    def recurrent_width(self) -> int:
        """The recurrent kernel's width: pre-activations per batch row and step (else 0)."""
        return (self._recurrent_kernel_shape() or [0])[-1]

    def _recurrent_kernel_shape(self) -> Optional[list[int]]:
        kernel = getattr(self.cell, "recurrent_kernel", None) if self.is_tfrnn else None
        return None if kernel is None else [int(d) for d in kernel.shape]

    def project_inputs(self, inputs: tf.Tensor, sequence_dropout: Any = None) -> tf.Tensor:
        """The input projection of a built-in cell over a whole `[batch, time, features]`."""
        return self.cell.project_inputs(inputs, sequence_dropout)


@contextlib.contextmanager
def _seeded_keras_dropout(cell: Any, seed: Optional[tf.Tensor]):
    """While tracing a step, makes a Keras cell's dropout masks a function of `seed`."""
    if seed is None:
        yield
        return

    def masks_like(tensor, rate, side, count):
        masks = dropout_lib.dropout_masks(
            dropout_lib.fold_in(seed, side),
            tf.shape(tensor),
            rate,
            tensor.dtype,
            count or 1,
        )
        return masks if count else masks[0]

    def keras2_input_mask(inputs, training=None, count=1):
        if not cell.dropout:
            return None
        return masks_like(inputs, cell.dropout, 0, count if count > 1 else None)

    def keras2_recurrent_mask(inputs, training=None, count=1):
        if not cell.recurrent_dropout:
            return None
        return masks_like(inputs, cell.recurrent_dropout, 1, count if count > 1 else None)

    def keras3_input_mask(step_input):
        if not cell.dropout:
            return None
        return masks_like(step_input, cell.dropout, 0, getattr(cell, "dropout_mask_count", None))

    def keras3_recurrent_mask(step_input):
        if not cell.recurrent_dropout:
            return None
        return masks_like(
            step_input, cell.recurrent_dropout, 1, getattr(cell, "dropout_mask_count", None)
        )

    if hasattr(cell, "get_dropout_mask_for_cell"):
        patches = {
            "get_dropout_mask_for_cell": keras2_input_mask,
            "get_recurrent_dropout_mask_for_cell": keras2_recurrent_mask,
        }
    else:
        patches = {
            "get_dropout_mask": keras3_input_mask,
            "get_recurrent_dropout_mask": keras3_recurrent_mask,
        }
    # object.__setattr__ bypasses Keras' attribute tracking; the instance attributes shadow
    # the class methods only while this step is traced.
    for name, fn in patches.items():
        object.__setattr__(cell, name, fn)
    try:
        yield
    finally:
        for name in patches:
            object.__delattr__(cell, name)


def _is_shape_nest(shape: Any) -> bool:
    """Whether `shape` is a nest of `TensorShape`s (nested inputs), not one shape."""
    if isinstance(shape, tf.TensorShape):
        return False
    return any(isinstance(leaf, tf.TensorShape) for leaf in tf.nest.flatten(shape))


def _features(shapes: list) -> Any:
    features = [s[1:].as_list() for s in shapes]
    return features[0] if len(features) == 1 else features
