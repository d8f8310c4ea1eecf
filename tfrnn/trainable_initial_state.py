"""`TrainableInitialState`: a cell wrapper whose initial state is a trainable variable."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import tensorflow as tf

from tfrnn._core import initializers
from tfrnn._core import variables as variables_lib
from tfrnn._core.cell_adapter import CellAdapter
from tfrnn.cell import RNNCell


class TrainableInitialState(RNNCell):
    """Runs `cell` unchanged, but starts every sequence from a learned state (as Sonnet does).

    Each of the cell's states gets a trainable variable of its shape without the batch
    (`initial_h [units]`, `initial_c [units]` for an LSTM); `get_initial_state(batch_size)`
    broadcasts them over the batch. An RNN starts from them whenever no `initial_state` is
    passed, so their gradients flow from the loss; a stateful RNN's first call and its
    `reset_state()` set its states to them (later calls carry their states on, as always).
    The wrapper composes: wrap a `StackedRNNCells` (one variable per flat state) or put
    wrapped cells in a stack (only those cells learn their start). The variables are
    created with the wrapper, are saved by checkpoints, SavedModels and `initial_state`
    signatures, and come after the cell's in `weights`.

    Built-in cells keep their fast loop; an LSTM wrapped so is not fused by TFLite (its
    initial state is not the zeros the fused op starts from) and converts to a WHILE loop.

    >>> rnn = tfrnn.RNN(tfrnn.TrainableInitialState(tfrnn.LSTMCell(4)))
    >>> [v.name for v in rnn.cell.initial_state_variables]
    ['trainable_initial_state/initial_h:0', 'trainable_initial_state/initial_c:0']
    >>> rnn.get_initial_state(3)[1].shape
    TensorShape([3, 4])

    Args:
      cell: any cell `tfrnn.RNN` takes, its state shapes known (a ConvLSTM cell built).
      initializer: of the initial-state variables (default zeros: the wrapped cell starts
        as the plain one does).
      name: the name scope of the variables.
    """

    def __init__(self, cell: Any, initializer: initializers.Initializer = "zeros", name: Optional[str] = None):
        if isinstance(cell, (list, tuple)):
            raise TypeError(
                "cell must be one cell, got a list; wrap tfrnn.StackedRNNCells([...]) to learn "
                "the initial state of every cell of a stack"
            )
        adapter = CellAdapter(cell, "cell")
        seed = getattr(cell, "seed", None)
        super().__init__(
            dtype=adapter.variable_dtype,
            compute_dtype=adapter.compute_dtype(tf.float32),
            seed=seed if isinstance(seed, int) else None,
            name=name or "trainable_initial_state",
        )
        self.cell = cell
        # A stack of one, for the adapter's rule of which state the output equals.
        self.adapters = [adapter]
        self.initializer = initializers.check(initializer, "initializer")
        self.state_size = cell.state_size
        self.output_size = adapter.output_shape
        self.initial_state_variables = [
            self.add_weight(f"initial_{state_name}", shape, self.initializer)
            for state_name, shape in zip(adapter.state_names, adapter.flat_state_shapes)
        ]

    @property
    def _adapter(self) -> CellAdapter:
        return self.adapters[0]

    # -- what the wrapper shows of the cell ---------------------------------------------------

    def flat_state_shapes(self) -> list[tf.TensorShape]:
        return list(self._adapter.flat_state_shapes)

    def state_names(self) -> list[str]:
        return list(self._adapter.state_names)

    def output_dtype(self, inputs_dtype: tf.DType) -> tf.DType:
        return self._adapter.compute_dtype(inputs_dtype)

    @property
    def accepts_constants(self) -> bool:
        return bool(getattr(self.cell, "accepts_constants", self._adapter.accepts_constants))

    def _tfrnn_method(self, name: str):
        # The loop paths look these up with getattr(..., None): an AttributeError for a cell
        # without them keeps the wrapper on the generic path, as the cell itself would be.
        method = getattr(self.cell, name, None) if self._adapter.is_tfrnn else None
        if not callable(method):
            raise AttributeError(f"{type(self.cell).__name__} has no {name}")
        return method

    project_inputs = property(lambda self: self._tfrnn_method("project_inputs"))
    step = property(lambda self: self._tfrnn_method("step"))
    fast_loop_spec = property(lambda self: self._tfrnn_method("fast_loop_spec"))
    fast_loop_ok = property(lambda self: self._tfrnn_method("fast_loop_ok"))
    apply_input_dropout = property(lambda self: self._tfrnn_method("apply_input_dropout"))
    state_groups = property(lambda self: self._tfrnn_method("state_groups"))

    @property
    def weights(self) -> list[tf.Variable]:
        """The cell's weights, then the initial-state variables (one per state)."""
        return list(getattr(self.cell, "weights", [])) + list(self._weights)

    @property
    def trainable_variables(self) -> tuple[tf.Variable, ...]:
        own = [v for v in self._weights if v.trainable]
        return tuple(variables_lib.unique(list(self._adapter.trainable_variables()) + own))

    def regularization_losses(self) -> list[tf.Tensor]:
        losses = getattr(self.cell, "regularization_losses", None)
        return list(losses()) if callable(losses) else []

    def get_config(self) -> dict[str, Any]:
        return {"cell": self.cell, "initializer": self.initializer, "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "TrainableInitialState":
        return cls(**config)

    # -- the recurrence ------------------------------------------------------------------------

    def build(self, input_shape) -> None:
        self._adapter.build(tf.TensorShape(input_shape))

    def get_initial_state(self, batch_size=None, dtype=None) -> list[tf.Tensor]:
        """The variables broadcast to `[batch_size, *state_shape]` (a static batch stays static)."""
        dtype = tf.as_dtype(dtype or self.compute_dtype)
        states = []
        for variable in self.initial_state_variables:
            value = tf.cast(variable, dtype) if variable.dtype != dtype else tf.convert_to_tensor(variable)
            if isinstance(batch_size, int):
                shape: Any = [batch_size] + variable.shape.as_list()
            else:
                shape = tf.concat([[batch_size], variable.shape.as_list()], 0)
            states.append(tf.broadcast_to(value[None], shape))
        return states

    def uses_dropout(self, training: bool) -> bool:
        return self._adapter.needs_seed(training)

    def get_dropout_masks(self, batch_size, training: bool = False, seed=None) -> Any:
        """What the cell draws once per sequence (its masks, or a Keras cell's seed)."""
        if not self.uses_dropout(training):
            return None
        if seed is None:
            seed = self.seed_stream.next()
        return self._adapter.sequence_dropout(batch_size, training, seed)

    def call(
        self,
        inputs: tf.Tensor,
        states: Sequence[tf.Tensor],
        training: bool = False,
        constants: Optional[list] = None,
        dropout_masks: Any = None,
    ):
        return self._adapter.call_step(
            inputs,
            list(states),
            constants=constants if self.accepts_constants else None,
            training=training,
            sequence_dropout=dropout_masks,
        )
