"""`StackedRNNCells`: several cells run as one, each feeding its output to the next."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import tensorflow as tf

from tfrnn._core import dropout as dropout_lib
from tfrnn._core import variables as variables_lib
from tfrnn.cell import RNNCell
from tfrnn._core.cell_adapter import CellAdapter


class StackedRNNCells(RNNCell):
    """Cells stacked on top of each other: step `t` of cell `k` reads cell `k - 1`'s output.

    Any mix of cells the RNN accepts can be stacked (tfrnn, `tf.Module`, tf-keras and Keras 3
    cells). The states are the cells' states in order, flat: `[h1, c1, h2]` for an LSTM cell
    under a GRU cell, which is also the order `return_state` returns them in; `initial_state`
    may be given flat or nested per cell (`[[h1, c1], h2]`), as in Keras. `state_size` is the
    tuple of the cells' `state_size`s; the output is the last cell's output. `constants` go to
    every cell whose `call` takes them.

    >>> stack = tfrnn.StackedRNNCells([tfrnn.LSTMCell(8), tfrnn.GRUCell(4)])
    >>> [s.shape for s in tfrnn.RNN(stack, return_state=True)(tf.ones([2, 3, 5]))[1:]]
    [TensorShape([2, 8]), TensorShape([2, 8]), TensorShape([2, 4])]

    Args:
      cells: the cells, bottom first.
      name: name scope.
    """

    def __init__(self, cells: Sequence[Any], name: Optional[str] = None):
        if isinstance(cells, (str, bytes)) or not isinstance(cells, (list, tuple)):
            raise TypeError(f"cells must be a list of cells, got {type(cells).__name__}")
        if not cells:
            raise ValueError("cells must hold at least one cell, got an empty list")
        adapters = [CellAdapter(cell, f"cells[{i}]") for i, cell in enumerate(cells)]
        first = adapters[0].cell
        super().__init__(dtype=getattr(first, "dtype", None) or tf.float32, name=name)
        self.cells = list(cells)
        self.adapters = adapters

    @property
    def state_size(self) -> tuple:
        """The cells' `state_size`s, bottom cell first (read when asked: cells may set them
        in `build()`)."""
        return tuple(cell.state_size for cell in self.cells)

    @state_size.setter
    def state_size(self, value: Any) -> None:
        # SavedModels of tfrnn 0.1.0 kept state_size as a tracked list and restore it (as an
        # empty ListWrapper, filled later): ignored, the sizes are the cells'. Other values
        # must be the same sizes.
        if type(value).__name__ == "ListWrapper":
            return
        if tf.nest.flatten(list(value)) != tf.nest.flatten(list(self.state_size)):
            raise AttributeError(
                f"state_size of StackedRNNCells is its cells' ({self.state_size}), got {value!r}"
            )

    @property
    def output_size(self) -> Any:
        """The last cell's output shape."""
        return self.adapters[-1].output_shape

    def flat_state_shapes(self) -> list[tf.TensorShape]:
        """The states of all cells, in order (what the RNN carries and returns)."""
        return [shape for adapter in self.adapters for shape in adapter.flat_state_shapes]

    def state_groups(self) -> list[int]:
        """How many states each cell has, to regroup a flat list per cell."""
        return [len(adapter.flat_state_shapes) for adapter in self.adapters]

    def build(self, input_shape) -> None:
        shape = tf.TensorShape(input_shape)
        for adapter in self.adapters:
            adapter.build(shape)
            shape = tf.TensorShape([shape[0]]).concatenate(adapter.output_shape)

    def output_dtype(self, inputs_dtype: tf.DType) -> tf.DType:
        """The last cell's output dtype (each cell may compute in its own dtype)."""
        return self.adapters[-1].compute_dtype(inputs_dtype)

    def state_names(self) -> list[str]:
        """`h0, c0, h1`: each cell's state names, suffixed by the cell's index."""
        return [f"{name}{i}" for i, a in enumerate(self.adapters) for name in a.state_names]

    @property
    def accepts_constants(self) -> bool:
        """Whether any cell of the stack takes `constants`."""
        return any(adapter.accepts_constants for adapter in self.adapters)

    def get_initial_state(self, batch_size=None, dtype=None) -> list[list[tf.Tensor]]:
        """Each cell's initial states, nested per cell."""
        return [
            adapter.initial_state(batch_size, dtype or adapter.compute_dtype(tf.float32))
            for adapter in self.adapters
        ]

    def uses_dropout(self, training: bool) -> bool:
        return any(adapter.needs_seed(training) for adapter in self.adapters)

    def get_dropout_masks(self, batch_size, training=False, seed=None) -> Optional[list]:
        """Per cell, what it draws once per sequence (its masks, or a seed for Keras cells)."""
        if not self.uses_dropout(training):
            return None
        if seed is None:
            seed = self.seed_stream.next()
        seed = tf.cast(seed, tf.int64)
        return [
            adapter.sequence_dropout(
                batch_size, training, dropout_lib.fold_in(seed, index)
            )
            for index, adapter in enumerate(self.adapters)
        ]

    @property
    def trainable_variables(self) -> tuple[tf.Variable, ...]:
        """All cells' trainable variables, bottom cell first (Keras 3 cells' included)."""
        return tuple(variables_lib.unique(v for a in self.adapters for v in a.trainable_variables()))

    def regularization_losses(self) -> list[tf.Tensor]:
        losses = []
        for cell in self.cells:
            if callable(getattr(cell, "regularization_losses", None)):
                losses.extend(cell.regularization_losses())
        return losses

    def call(self, inputs, states, training=False, constants=None, dropout_masks=None):
        new_states = []
        offset = 0
        for index, adapter in enumerate(self.adapters):
            count = len(adapter.flat_state_shapes)
            inputs, cell_states = adapter.call_step(
                inputs,
                list(states[offset : offset + count]),
                constants=constants if adapter.accepts_constants else None,
                training=training,
                sequence_dropout=dropout_masks[index] if dropout_masks else None,
            )
            new_states.extend(cell_states)
            offset += count
        return inputs, new_states
