"""`Bidirectional`: a forward and a backward `tfrnn.RNN` over the same inputs, merged."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrnn._core import state_spec
from tfrnn._core import variables as variables_lib
from tfrnn.rnn import RNN
from tfrnn.stacked_cells import StackedRNNCells
from tfrnn.trainable_initial_state import TrainableInitialState

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _fresh_copy(cell: Any) -> Any:
    """A cell like `cell` with new weights, from its config.

    A cell seeded with an int gets the next seed: the same one would draw the same initial
    weights (and dropout masks) for both directions.
    """
    if isinstance(cell, StackedRNNCells):
        return StackedRNNCells([_fresh_copy(c) for c in cell.cells], name=cell.name)
    if isinstance(cell, TrainableInitialState):
        return TrainableInitialState(_fresh_copy(cell.cell), cell.initializer, name=cell.name)
    get_config, from_config = getattr(cell, "get_config", None), getattr(type(cell), "from_config", None)
    if not callable(get_config) or not callable(from_config):
        raise TypeError(
            f"layer's cell {type(cell).__name__} has no get_config()/from_config() to create the "
            "backward RNN's cell from; pass backward_layer=tfrnn.RNN(<another cell>, "
            "go_backwards=True, ...)"
        )
    config = dict(get_config())
    seed = config.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        config["seed"] = seed + 1
    return from_config(config)


def _halves_name(prefix: str, name: str) -> str:
    return f"{prefix}_{name.removeprefix('forward_').removeprefix('backward_')}"


def _over_cell(rnn: RNN, cell: Any, go_backwards: bool, name: str) -> RNN:
    """A new RNN over `cell` with `rnn`'s options, as a `Bidirectional` half runs it."""
    return RNN(
        cell,
        return_sequences=rnn.return_sequences,
        return_state=rnn.return_state,
        go_backwards=go_backwards,
        stateful=rnn.stateful,
        unroll=rnn.unroll,
        # Keras' rule: a returned sequence is zero at masked steps, whatever the layer says.
        zero_output_for_mask=rnn.return_sequences,
        jit_compile=rnn.jit_compile,
        name=name,
        length_buckets=rnn.length_buckets,
    )


def _check_halves(forward: RNN, backward: RNN) -> None:
    if forward.go_backwards == backward.go_backwards:
        raise ValueError(
            "layer and backward_layer must have different go_backwards values, got "
            f"go_backwards={forward.go_backwards} for both"
        )
    for attribute in ("return_sequences", "return_state", "stateful"):
        ours, theirs = getattr(forward, attribute), getattr(backward, attribute)
        if ours != theirs:
            raise ValueError(
                f"layer and backward_layer must have the same {attribute}, got {ours} for layer "
                f"and {theirs} for backward_layer"
            )


class Bidirectional(tf.Module):
    """Runs an RNN forwards and a twin backwards over the same inputs, as Keras' `Bidirectional`.

    The backward RNN's returned sequence is flipped back into the inputs' time order, then
    the two outputs are merged: `concat` (features `[..., 2 * units]`), `sum`, `mul`, `ave`,
    or `None` (a list `[forward output, backward output]`). With `return_state` the result
    is `[output(s), *forward states, *backward states]`; `initial_state` is one flat list,
    the forward RNN's states first; `reset_state` takes the same. Masks go to both RNNs; a
    returned sequence is zero at masked steps (Keras' rule: `zero_output_for_mask` is set to
    `return_sequences` on both). Exports get `serving_default` only: a backward RNN cannot
    stream one timestep at a time. Two plain LSTMs without a mask become two fused TFLite
    LSTM ops.

    Unlike Keras, which recreates the forward layer from its config with new weights, the
    forward RNN runs `layer`'s cell itself (its weights, shared with `layer`), so a trained
    RNN can be wrapped; the backward RNN runs `backward_layer`'s cell, or a fresh copy of
    `layer`'s cell from its config (a cell seeded with an int gets that seed + 1). Both
    halves are new `tfrnn.RNN`s with `layer`'s options (`forward_layer`, `backward_layer`).

    >>> bi = tfrnn.Bidirectional(tfrnn.RNN(tfrnn.LSTMCell(8), return_sequences=True))
    >>> bi(tf.ones([2, 5, 3]), mask=tf.sequence_mask([5, 3], 5)).shape
    TensorShape([2, 5, 16])

    Args:
      layer: a `tfrnn.RNN`.
      merge_mode: `"concat"`, `"sum"`, `"mul"`, `"ave"` or `None`.
      backward_layer: a `tfrnn.RNN` with the opposite `go_backwards` and the same
        `return_sequences`, `return_state` and `stateful`; `None` derives one from `layer`.
      name: the module's name.
    """

    def __init__(
        self,
        layer: RNN,
        merge_mode: Optional[str] = "concat",
        backward_layer: Optional[RNN] = None,
        name: Optional[str] = None,
    ):
        for argument, value in (("layer", layer), ("backward_layer", backward_layer)):
            if value is not None and not isinstance(value, RNN):
                raise TypeError(
                    f"{argument} must be a tfrnn.RNN, got {type(value).__name__}; in a Keras "
                    "model use the Keras adapter's Bidirectional"
                )
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"merge_mode must be one of {list(MERGE_MODES)}, got {merge_mode!r}")
        super().__init__(name=name or _halves_name("bidirectional", layer.name))
        if backward_layer is None:
            backward_cell, backward_options = _fresh_copy(layer.cell), layer
            backward_direction = not layer.go_backwards
        else:
            _check_halves(layer, backward_layer)
            backward_cell, backward_options = backward_layer.cell, backward_layer
            backward_direction = backward_layer.go_backwards
        self.merge_mode = merge_mode
        self.forward_layer = _over_cell(layer, layer.cell, layer.go_backwards, _halves_name("forward", layer.name))
        self.backward_layer = _over_cell(
            backward_options, backward_cell, backward_direction,
            _halves_name("backward", (backward_layer or layer).name),
        )  # fmt: skip
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self.stateful = layer.stateful

    # -- what the two halves share -------------------------------------------------------------

    @property
    def _halves(self) -> tuple[RNN, RNN]:
        return self.forward_layer, self.backward_layer

    @property
    def states(self) -> list[tf.Variable]:
        """The forward RNN's state variables, then the backward RNN's (stateful only)."""
        return self.forward_layer.states + self.backward_layer.states

    @property
    def state_shapes(self) -> list[tf.TensorShape]:
        return self.forward_layer.state_shapes + self.backward_layer.state_shapes

    @property
    def input_shape(self) -> Optional[tf.TensorShape]:
        """`[batch, None, *features]` once built, else `None`."""
        return self.forward_layer.input_shape

    @property
    def trainable_variables(self) -> Sequence[tf.Variable]:
        return tuple(variables_lib.unique(v for half in self._halves for v in half.trainable_variables))

    def build(self, input_shape: Sequence[Optional[int]]) -> None:
        """Creates both RNNs' variables for inputs of `input_shape` `[batch, time, features...]`."""
        for half in self._halves:
            half.build(input_shape)

    def get_initial_state(self, batch_size: Any, dtype: Optional[tf.DType] = None) -> list:
        """The forward RNN's initial states, then the backward RNN's, flat."""
        return [s for half in self._halves for s in half.get_initial_state(batch_size, dtype)]

    def _split_states(self, states: Any, argument: str) -> tuple[list, list]:
        """A flat list of states as `(forward states, backward states)`."""
        count = len(self.forward_layer.state_shapes)
        expected = count + len(self.backward_layer.state_shapes)
        given = list(states) if isinstance(states, (list, tuple)) else [states]
        if len(given) != expected:
            raise ValueError(
                f"{argument} must be a flat list of {expected} tensors, the forward RNN's "
                f"{count} then the backward RNN's {expected - count} (shapes "
                f"{state_spec.format_state_shapes(self.state_shapes)}), got "
                f"{state_spec.describe(given)}"
            )
        return given[:count], given[count:]

    def reset_state(self, states: Any = None) -> None:
        """Resets both stateful RNNs (to `states`: the forward RNN's, then the backward's)."""
        if not self.stateful:
            raise ValueError(
                "reset_state() is for stateful RNNs; this Bidirectional wraps an RNN created "
                "with stateful=False"
            )
        if states is None:
            for half in self._halves:
                half.reset_state()
            return
        forward, backward = self._split_states(states, "states")
        self._check_state_values(forward + backward)
        self.forward_layer.reset_state(forward)
        self.backward_layer.reset_state(backward)

    def _check_state_values(self, values: list) -> None:
        """Shapes `[batch, *state_shape]` with one batch (the states' own, once they exist),
        checked for both halves before either changes."""
        existing = self.states
        batch = int(existing[0].shape[0]) if existing else None
        for value, shape in zip(values, self.state_shapes):
            value_shape = tf.TensorShape(np.shape(value))
            batch = value_shape[0] if batch is None and value_shape.rank else batch
            if value_shape != tf.TensorShape([batch]).concatenate(shape):
                raise ValueError(
                    f"states must be {len(self.state_shapes)} tensors of shape "
                    f"{state_spec.format_state_shapes(self.state_shapes, batch)} (the forward RNN's, "
                    f"then the backward RNN's), got {state_spec.describe(values)}"
                )

    # -- the call ------------------------------------------------------------------------------

    def __call__(self, inputs: Any, mask: Any = None, initial_state: Any = None, training: Any = False):
        """Runs both RNNs over `inputs` and merges their outputs.

        Args:
          inputs: `[batch, timesteps, features...]` (or ragged), as `tfrnn.RNN` takes them.
          mask: `[batch, timesteps]`, given to both RNNs.
          initial_state: one flat list: the forward RNN's states, then the backward RNN's.
          training: whether dropout applies.

        Returns:
          The merged output (a list of two with `merge_mode=None`), followed by the forward
          and then the backward final states with `return_state=True`.
        """
        forward_state = backward_state = None
        if initial_state is not None:
            forward_state, backward_state = self._split_states(initial_state, "initial_state")
        y = self.forward_layer(inputs, mask=mask, initial_state=forward_state, training=training)
        y_rev = self.backward_layer(inputs, mask=mask, initial_state=backward_state, training=training)
        states = []
        if self.return_state:
            states = list(y[1:]) + list(y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        if self.return_sequences:
            y_rev = tf.reverse(y_rev, [1])
        output = _merge(self.merge_mode, y, y_rev)
        if not self.return_state:
            return output
        return (output if self.merge_mode is None else [output]) + states


def _merge(merge_mode: Optional[str], y: Any, y_rev: Any) -> Any:
    if merge_mode == "concat":
        return tf.concat([y, y_rev], -1)
    if merge_mode == "sum":
        return y + y_rev
    if merge_mode == "ave":
        return (y + y_rev) / 2
    if merge_mode == "mul":
        return y * y_rev
    return [y, y_rev]
