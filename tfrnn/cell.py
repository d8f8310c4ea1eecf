"""`RNNCell`: the base class for tfrnn's cells and for cells users write."""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrnn._core import initializers
from tfrnn._core.dropout import SeedStream
from tfrnn._core import state_spec

class RNNCell(tf.Module):
    """Base class for recurrent cells: one timestep of a recurrence, as a `tf.Module`.

    A cell maps `(inputs_t [batch, features], prev_states)` to
    `(output_t [batch, output_size], new_states)`. Subclasses set `state_size` (and usually
    `output_size`), create their variables in `build(input_shape)` with `add_weight`, and
    implement `call(inputs, states, training=False)`. Variables are created on the first call
    (or by an explicit `build`), outside any `tf.function` being traced.

    >>> class MinimalCell(tfrnn.RNNCell):
    ...     def __init__(self, units):
    ...         super().__init__()
    ...         self.units = units
    ...         self.state_size = units
    ...         self.output_size = units
    ...     def build(self, input_shape):
    ...         self.kernel = self.add_weight("kernel", [input_shape[-1], self.units])
    ...     def call(self, inputs, states, training=False):
    ...         h = tf.tanh(inputs @ self.kernel + states[0])
    ...         return h, [h]
    >>> tfrnn.RNN(MinimalCell(8))(tf.ones([2, 5, 3])).shape
    TensorShape([2, 8])

    Args:
      dtype: dtype of the variables (and of the computation, unless `compute_dtype`).
      compute_dtype: dtype of the computation, its outputs and states; `None`: `dtype`.
        Mixed precision as in Keras: `dtype=tf.float32, compute_dtype=tf.bfloat16` keeps
        float32 variables and reads them as bfloat16 for the maths.
      seed: seed for weight initialization and dropout masks; `None` draws a random one.
      name: name scope of the variables.
    """

    state_size: Any = None
    output_size: Any = None

    def __init__(
        self,
        *,
        dtype: tf.DType | str = tf.float32,
        compute_dtype: tf.DType | str | None = None,
        seed: Optional[int] = None,
        name: Optional[str] = None,
    ):
        super().__init__(name=name)
        self.dtype = _floating(dtype, "dtype")
        self.compute_dtype = self.dtype if compute_dtype is None else _floating(compute_dtype, "compute_dtype")
        self.seed = seed
        self.built = False
        self.input_shape: Optional[tf.TensorShape] = None
        self._rng: Optional[tf.random.Generator] = None
        self._seed_stream: Optional[SeedStream] = None
        self._regularizers: list[tuple[tf.Variable, Callable[[tf.Tensor], tf.Tensor]]] = []
        self._weights: list[tf.Variable] = []

    # -- variables -------------------------------------------------------------------------

    @property
    def seed_stream(self) -> SeedStream:
        """Seeds for dropout masks when the cell is called on its own (not by an RNN)."""
        if self._seed_stream is None:
            self._seed_stream = SeedStream(self.seed, name="seed_stream")
        return self._seed_stream

    @property
    def rng(self) -> tf.random.Generator:
        """The generator behind this cell's initial weights (used eagerly, at build)."""
        if self._rng is None:
            with tf.init_scope():
                if self.seed is None:
                    self._rng = tf.random.Generator.from_non_deterministic_state()
                else:
                    self._rng = tf.random.Generator.from_seed(self.seed)
        return self._rng

    def read(self, variable: Any) -> Any:
        """`variable` as a tensor in the compute dtype (`None` stays `None`)."""
        if variable is None or variable.dtype == self.compute_dtype:
            return variable
        return tf.cast(variable, self.compute_dtype)

    def add_weight(
        self,
        name: str,
        shape: Sequence[int],
        initializer: initializers.Initializer = "glorot_uniform",
        trainable: bool = True,
        regularizer: Optional[Callable[[tf.Tensor], tf.Tensor]] = None,
        constraint: Optional[Callable[[tf.Tensor], tf.Tensor]] = None,
    ) -> tf.Variable:
        """Creates a variable of this cell, eagerly even when called while tracing a function.

        The variable is named `<scope>/<cell name>/<name>` after the name scope the cell is
        built in, as Keras names a layer's weights (`lstm/lstm_cell/kernel:0` inside a
        Keras layer named `lstm`), not after the scope the cell was created in.
        """
        initializers.check(initializer, f"initializer of {name}")
        with tf.init_scope(), tf.name_scope(self.name):
            value = initializers.initial_value(initializer, shape, self.dtype, self.rng)
            variable = tf.Variable(value, name=name, trainable=trainable, constraint=constraint)
        if regularizer is not None:
            self._regularizers.append((variable, regularizer))
        self._weights.append(variable)
        return variable

    @property
    def weights(self) -> list[tf.Variable]:
        """The variables in creation order (Keras' order: kernel, recurrent_kernel, bias)."""
        return list(self._weights)

    def get_weights(self) -> list:
        """The weights as NumPy arrays, in the order of `weights`."""
        return [variable.numpy() for variable in self.weights]

    def set_weights(self, values: Sequence[Any]) -> None:
        """Assigns all weights at once (e.g. from a tf-keras cell); nothing changes on error."""
        values = list(values)
        weights = self.weights
        if len(values) != len(weights):
            raise ValueError(
                f"set_weights expects {len(weights)} arrays "
                f"({', '.join(v.name for v in weights)}), got {len(values)}"
            )
        for variable, value in zip(weights, values):
            if tuple(np.shape(value)) != tuple(variable.shape.as_list()):
                raise ValueError(
                    f"set_weights: {variable.name} has shape {variable.shape.as_list()}, "
                    f"got an array of shape {list(np.shape(value))}"
                )
        for variable, value in zip(weights, values):
            variable.assign(value)

    def build(self, input_shape: Sequence[Optional[int]]) -> None:
        """Creates the variables for inputs of `input_shape` (`[batch, features]`).

        Subclasses override this; every override is wrapped (see `__init_subclass__`) so
        that building is idempotent, happens eagerly even while a function is traced, and
        records the feature shape that later calls are checked against.
        """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "build" in cls.__dict__:
            cls.build = _idempotent_build(cls.__dict__["build"])

    def maybe_build(self, input_shape: Sequence[Optional[int]]) -> None:
        """Builds once; later calls check that the feature size has not changed."""
        self.build(input_shape)

    def check_input_shape(self, input_shape: tf.TensorShape, argument: str) -> None:
        """Raises if the per-step feature shape differs from the one the cell was built for."""
        expected = self.input_shape[1:]
        received = input_shape[1:] if input_shape.rank is not None else input_shape
        if not expected.is_compatible_with(received):
            raise ValueError(
                f"{argument} has features of shape {received.as_list()}, but "
                f"{type(self).__name__} {self.name!r} was built for features of shape "
                f"{expected.as_list()}"
            )

    def uses_dropout(self, training: bool) -> bool:
        """Whether `call` with this `training` flag needs per-sequence `dropout_masks`.

        Cells that say yes implement `get_dropout_masks(batch_size, training, seed)`, whose
        result the RNN draws once per sequence and passes to every step as `dropout_masks=`.
        """
        return False

    def regularization_losses(self) -> list[tf.Tensor]:
        """The weight regularization terms, e.g. for a loss; empty without regularizers."""
        return [regularizer(variable) for variable, regularizer in self._regularizers]

    # -- the recurrence ----------------------------------------------------------------------

    def __call__(self, inputs, states, training: bool = False, **kwargs):
        """One timestep: builds on first use, then runs `call`."""
        inputs = tf.convert_to_tensor(inputs, dtype_hint=self.compute_dtype)
        self.maybe_build(inputs.shape)
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        return self.call(inputs, states, training=training, **kwargs)

    def call(self, inputs: tf.Tensor, states: list[tf.Tensor], training: bool = False):
        """One timestep: `(inputs [batch, features], states) -> (output, new_states)`."""
        raise TypeError(f"{type(self).__name__} must implement call(inputs, states, training)")

    def get_initial_state(self, batch_size=None, dtype=None) -> list[tf.Tensor]:
        """Zeros of shape `[batch_size, *state_shape]` for every state (compute dtype)."""
        dtype = tf.as_dtype(dtype or self.compute_dtype)
        shapes = state_spec.flat_state_shapes(self.state_size, type(self).__name__)
        return state_spec.zeros(shapes, batch_size, dtype)


def _floating(dtype: Any, argument: str) -> tf.DType:
    try:
        dtype = tf.as_dtype(dtype)
    except TypeError:
        raise TypeError(f"{argument} must be a floating dtype, got {dtype!r}") from None
    if not dtype.is_floating:
        raise TypeError(f"{argument} must be a floating dtype, got {dtype.name}")
    return dtype


def _idempotent_build(build):
    """Wraps a cell's `build`: validate, build once (eagerly), record the feature shape."""

    @functools.wraps(build)
    def wrapper(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        if self.built:
            self.check_input_shape(input_shape, "inputs")
            return
        if input_shape.rank is None or input_shape.rank < 2:
            raise ValueError(
                f"{type(self).__name__} inputs must be [batch, features...], "
                f"got shape {input_shape}"
            )
        if not input_shape[1:].is_fully_defined():
            raise ValueError(
                f"{type(self).__name__} needs a known feature size to build, "
                f"got inputs of shape {input_shape}"
            )
        if getattr(self, "_building", False):
            # A subclass' build calling super().build(): the outermost call records.
            build(self, input_shape)
            return
        self._building = True
        try:
            with tf.init_scope():
                build(self, input_shape)
        finally:
            self._building = False
        self.input_shape = tf.TensorShape([None]).concatenate(input_shape[1:])
        self.built = True

    return wrapper


RNNCell.build = _idempotent_build(RNNCell.build)
