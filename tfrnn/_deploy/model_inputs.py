"""The inputs of an exported model: how it is called, their names, which ones have a time axis.

`ModelInputs.of(model, input_spec)` reads a model's inputs from, in this order:

* an explicit `input_spec`: a `tf.TensorSpec`, or a list, tuple or dict of them (the model
  is called with that structure: `model([a, b])`, `model({"ids": ..., "lengths": ...})`);
* a `tf.function` with an `input_signature` as the model's `__call__` (called with its
  positional arguments, `model(a, b)`);
* a built `tfrnn.RNN` or `tfrnn.Bidirectional`: `[batch, None, *features]`;
* a Keras model's `inputs` (Keras 3 or tf-keras): names, dtypes and static shapes, a fixed
  number of timesteps included, called with the structure it was built with.

Names. A model with one input takes it as `inputs` (the name does not depend on how the
model was built). A model with several takes them under their own names: a dict's keys, a
Keras input's name, a `TensorSpec`'s name, an `input_signature` function's argument names,
or `input_<i>`.

Time axis. An input has a time axis (`[batch, timesteps, ...]`) when it feeds an RNN: its
values reach some `tfrnn.RNN` call's inputs or mask in the traced model (`feeding`), and
it has at least two axes. The others are side inputs (per-example features, lengths) that
a `step` takes whole. A model with a single input always streams that input; where the
trace finds no input feeding an RNN (an RNN called inside a nested `tf.function` of the
model's own), every input of rank >= 2 is taken to have a time axis.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, Callable, Iterable, Optional, Sequence

import tensorflow as tf

RESERVED = ("mask", "batch_size")
"""Names the signatures use for their own arguments (as are `state_<i>`)."""


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """One input of the signatures."""

    name: str
    spec: tf.TensorSpec
    """`[batch, timesteps, ...]` (time axis) or `[batch, ...]`, as the model declares it."""
    time_axis: bool = True

    def sequence_spec(self, batch: Optional[int], any_time: bool = False) -> tf.TensorSpec:
        """The whole-sequence spec at `batch` (time `None` with `any_time`)."""
        shape = [batch] + self.spec.shape[1:].as_list()
        if any_time and self.time_axis:
            shape[1] = None
        return tf.TensorSpec(shape, self.spec.dtype, name=self.name)

    def step_spec(self, batch: Optional[int]) -> tf.TensorSpec:
        """One timestep: the time axis dropped (a side input whole)."""
        shape = [batch] + self.spec.shape[1:].as_list()
        if self.time_axis:
            del shape[1]
        return tf.TensorSpec(shape, self.spec.dtype, name=self.name)


@dataclasses.dataclass(frozen=True)
class ModelInputs:
    """A model's inputs, flat, and the structure it takes them in."""

    inputs: tuple
    """`ModelInput`s, in the model's flat order."""
    structure: Any
    """The nest the model is called with, its leaves the inputs' flat indices."""
    positional: bool = False
    """Called as `model(*structure)` (an `input_signature`'s arguments), not `model(structure)`."""

    @classmethod
    def of(cls, model: Any, input_spec: Any = None) -> "ModelInputs":
        """The inputs of `model` (see the module docstring); an error naming what is missing."""
        if input_spec is not None:
            return cls._from_nest(input_spec, "input_spec")
        signature = _input_signature(model)
        if signature is not None:
            return cls._from_signature(model, signature)
        if _is_core_layer(model):
            shape = model.input_shape
            if shape is None:
                raise ValueError(
                    f"the {type(model).__name__} is not built, so its feature size is unknown; call it once, "
                    "call build([batch, None, features]), or pass input_spec=tf.TensorSpec([None, None, features])"
                )
            return cls._from_nest(tf.TensorSpec(shape, tf.float32), "input_spec")
        keras_inputs = getattr(model, "inputs", None)
        if isinstance(keras_inputs, (list, tuple)) and keras_inputs and all(hasattr(t, "shape") for t in keras_inputs):
            return cls._from_keras(model, list(keras_inputs))
        raise ValueError(
            f"cannot tell the inputs of {type(model).__name__}: it is not a Keras model with known inputs, "
            "and its __call__ is not a tf.function with an input_signature; pass input_spec=tf.TensorSpec("
            "[None, None, *features]) (or a list or dict of TensorSpecs for several inputs)"
        )

    @classmethod
    def _from_nest(cls, nest: Any, argument: str, names: Optional[list] = None, positional: bool = False):
        leaves = tf.nest.flatten(nest)
        for path, leaf in _paths(nest):
            if not isinstance(leaf, tf.TensorSpec):
                raise TypeError(
                    f"{argument}{path} must be a tf.TensorSpec (or a list or dict of them), got "
                    f"{type(leaf).__name__} {leaf!r}"
                )
        if names is None:
            names = _nest_names(nest)
        inputs = tuple(ModelInput(name, _checked_spec(spec, name, argument)) for name, spec in zip(names, leaves))
        _check_names([i.name for i in inputs], argument)
        structure = tf.nest.pack_sequence_as(nest, list(range(len(leaves))))
        return cls(inputs, structure, positional)

    @classmethod
    def _from_signature(cls, model: Any, signature: Sequence) -> "ModelInputs":
        arguments = list(inspect.signature(model.__call__.python_function).parameters)
        structure = list(signature)
        if sum(len(tf.nest.flatten(s)) for s in structure) == 1:
            return cls._from_nest(structure, "input_signature", ["inputs"], positional=True)
        names = []
        for position, spec in enumerate(structure):
            base = arguments[position] if position < len(arguments) else f"input_{position}"
            leaves = tf.nest.flatten(spec)
            if len(leaves) == 1:
                names.append(leaves[0].name or base)
            else:
                names += [leaf.name or f"{base}_{i}" for i, leaf in enumerate(leaves)]
        return cls._from_nest(structure, "input_signature", names, positional=True)

    @classmethod
    def _from_keras(cls, model: Any, keras_inputs: list) -> "ModelInputs":
        position = {id(t): i for i, t in enumerate(keras_inputs)}

        def spec(tensor) -> tf.TensorSpec:
            return tf.TensorSpec(tf.TensorShape(tensor.shape), tf.as_dtype(tensor.dtype))

        if len(keras_inputs) == 1:
            return cls._from_nest(spec(keras_inputs[0]), "the model's inputs")
        try:
            nested = model.input  # the structure the model was built with (list or dict)
        except (AttributeError, ValueError):
            nested = keras_inputs
        if isinstance(nested, dict) and all(id(t) in position for t in nested.values()):
            return cls._from_nest({k: spec(t) for k, t in nested.items()}, "the model's inputs")
        if not (isinstance(nested, (list, tuple)) and all(id(t) in position for t in nested)):
            nested = keras_inputs
        names = [getattr(t, "name", None) or f"input_{i}" for i, t in enumerate(nested)]
        return cls._from_nest([spec(t) for t in nested], "the model's inputs", names)

    # -- what the signatures need ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def time_inputs(self) -> list[ModelInput]:
        return [i for i in self.inputs if i.time_axis]

    @property
    def timesteps(self) -> Optional[int]:
        """The fixed number of timesteps the model declares (`None`: any)."""
        fixed = {i.spec.shape[1] for i in self.time_inputs if i.spec.shape[1] is not None}
        return fixed.pop() if len(fixed) == 1 else None

    def with_time_axes(self, indices: Iterable[int]) -> "ModelInputs":
        """These inputs (flat indices) have a time axis, the others are side inputs."""
        chosen = set(indices)
        inputs = tuple(dataclasses.replace(i, time_axis=n in chosen) for n, i in enumerate(self.inputs))
        times = {i.spec.shape[1] for i in inputs if i.time_axis and i.spec.shape[1] is not None}
        if len(times) > 1:
            names = [f"{i.name} {i.spec.shape}" for i in inputs if i.time_axis]
            raise ValueError(f"the inputs that feed the RNNs must have the same number of timesteps, got {names}")
        return dataclasses.replace(self, inputs=inputs)

    def call(self, model: Callable, tensors: Sequence[tf.Tensor], **kwargs: Any) -> Any:
        """`model` called on the flat `tensors` in its own structure."""
        packed = tf.nest.map_structure(lambda index: tensors[index], self.structure)
        if self.positional:
            return model(*packed, **kwargs)
        return model(packed, **kwargs)


def feeding(placeholders: Sequence[tf.Tensor], tensors: Iterable[tf.Tensor]) -> set[int]:
    """The indices of the `placeholders` whose values reach any of `tensors` in their graph."""
    index = {p.op.name: i for i, p in enumerate(placeholders)}
    found, seen = set(), set()
    stack = [t.op for t in tensors if isinstance(t, tf.Tensor) and hasattr(t, "op")]
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.name in index:
            found.add(index[op.name])
        stack.extend(t.op for t in op.inputs)
    return found


def relaxed_callable(model: Any, fixed_time: bool) -> Callable:
    """`model` without its own check of the input shapes, to call it on other timesteps.

    A `__call__` with an `input_signature` runs its Python function (the caller traces it);
    a Keras model with a fixed number of timesteps runs its `call` (its `__call__` rejects
    any other length).
    """
    if _input_signature(model) is not None:
        return model.__call__.python_function
    if fixed_time and callable(getattr(model, "call", None)) and hasattr(model, "inputs"):
        return model.call
    return model


def _input_signature(model: Any) -> Optional[Sequence]:
    call = getattr(model, "__call__", None)
    signature = getattr(call, "input_signature", None)
    return signature if signature is not None and hasattr(call, "python_function") else None


def _is_core_layer(model: Any) -> bool:
    from tfrnn.bidirectional import Bidirectional
    from tfrnn.rnn import RNN

    return isinstance(model, (RNN, Bidirectional))


def _checked_spec(spec: tf.TensorSpec, name: str, argument: str) -> tf.TensorSpec:
    if spec.shape.rank is None or spec.shape.rank < 1:
        raise ValueError(f"{argument} {name!r} must have a batch axis ([batch, ...]), got shape {spec.shape}")
    if not spec.shape[2:].is_fully_defined():
        raise ValueError(
            f"{argument} {name!r} must give its feature shape, got {spec.shape} (only batch and "
            "timesteps may be None)"
        )
    return tf.TensorSpec(spec.shape, spec.dtype, name=name)


def _paths(nest: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(nest, dict):
        for key in sorted(nest):
            yield from _paths(nest[key], f"{prefix}[{key!r}]")
    elif isinstance(nest, (list, tuple)):
        for i, item in enumerate(nest):
            yield from _paths(item, f"{prefix}[{i}]")
    else:
        yield prefix, nest


def _nest_names(nest: Any) -> list[str]:
    """`inputs` for a single spec; else dict keys (joined by `_` when nested), names or `input_<i>`."""
    leaves = list(_paths(nest))
    if len(leaves) == 1:
        return ["inputs"]
    names = []
    for i, (path, spec) in enumerate(leaves):
        keys = re.findall(r"\['([^']*)'\]", path)
        names.append("_".join(keys) if keys else (getattr(spec, "name", None) or f"input_{i}"))
    return names


def _check_names(names: list[str], argument: str) -> None:
    for name in names:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-/]*", name):
            raise ValueError(f"{argument}: input name {name!r} is not a valid signature argument name")
        if name in RESERVED or re.fullmatch(r"state_\d+", name):
            raise ValueError(
                f"{argument}: input name {name!r} is taken by the signatures' own arguments "
                f"({', '.join(RESERVED)}, state_<i>); rename the input"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"{argument}: the inputs' names must differ, got {names}")
