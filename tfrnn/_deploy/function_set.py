"""Every function an export or a TFLite conversion traces from a model, in one typed record.

`trace(signatures, ...)` traces, from one `ModelSignatures`:

* the serving signatures (`ServingFunctions`): `serving_default`, `step` and
  `initial_state` (when the model streams), `reset_state` (stateful models), as TF Serving
  gets them (XLA-compiled or not);
* the TFLite-ready functions (`TFLiteFunctions`), at a fixed batch or a dynamic one:
  `serving_default` with plain LSTMs as the converter's composite function (fused where the
  RNN's options allow), the same unfused (for when the fused op's ±10 cell clip would change
  the results), `probe` (the largest |c| of each LSTM the converter would fuse), `step`,
  `reset_state`, and `initial_state` (TensorFlow-side only: where the step check starts).

One rule for the TFLite `step`: it is traced without the composite LSTM. A step reads every
RNN's final states, and the fused op returns none, so no RNN call in a step can be fused;
tracing it unfused says so instead of relying on the substitute declining every call.

`tfrnn.export` keeps the TFLite functions in the SavedModel (root attributes
`tflite_<name>`, their names in the export's metadata under `tflite_functions`) so that
`tfrnn.tflite.convert(export_dir)` needs nothing else; `TFLiteFunctions.stored` and
`TFLiteFunctions.from_saved_model` are the two ends of that layout, which the exports already
written (`saved_models/`) use too.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import tensorflow as tf

from tfrnn._deploy import composite_lstm
from tfrnn._deploy.signatures import ModelSignatures, TraceOptions

STORED_PREFIX = "tflite_"
"""A TFLite function `name` is the SavedModel root's attribute `tflite_<name>`."""

ConcreteFunction = Any  # tf.types.experimental.ConcreteFunction, or a loaded one


@dataclasses.dataclass(frozen=True)
class ServingFunctions:
    """The SavedModel's signatures, as concrete functions."""

    serving_default: ConcreteFunction
    step: Optional[ConcreteFunction]
    initial_state: Optional[ConcreteFunction]
    reset_state: Optional[ConcreteFunction]

    def as_dict(self) -> dict[str, ConcreteFunction]:
        """`{signature name: function}` of those present, in the order users see them."""
        names = ("serving_default", "step", "initial_state", "reset_state")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclasses.dataclass(frozen=True)
class TFLiteFunctions:
    """The functions a TFLite conversion converts and checks against."""

    batch: Optional[int]
    """Their fixed batch size; `None` for a dynamic one (then nothing fuses)."""
    serving_default: ConcreteFunction
    """The whole sequence; plain LSTMs as the composite function where they can fuse."""
    serving_default_unfused: Optional[ConcreteFunction]
    """The same without the composite function; `None` when `serving_default` has none."""
    probe: ConcreteFunction
    """`{"max_abs_cell_state": [fusable LSTMs]}` on a whole sequence."""
    step: Optional[ConcreteFunction]
    initial_state: Optional[ConcreteFunction]
    """TensorFlow-side only (where the step check's stream starts); not converted."""
    reset_state: Optional[ConcreteFunction]

    @property
    def fusable(self) -> bool:
        """Whether `serving_default` may hold LSTMs that become the fused op."""
        return self.serving_default_unfused is not None

    def for_conversion(self, names: list[str], unfused: bool) -> dict[str, ConcreteFunction]:
        """`{signature name: function}` for `names`, `serving_default` unfused if asked."""
        functions = {"serving_default": self.serving(unfused), "step": self.step, "reset_state": self.reset_state}
        missing = [name for name in names if functions.get(name) is None]
        if missing:
            raise ValueError(f"the model has no TFLite function for {missing}")
        return {name: functions[name] for name in names}

    def serving(self, unfused: bool) -> ConcreteFunction:
        """`serving_default`, or its unfused twin when `unfused` (where there is one)."""
        return self.serving_default_unfused if unfused and self.fusable else self.serving_default

    def stored(self) -> dict[str, ConcreteFunction]:
        """`{name: function}` a SavedModel keeps as `tflite_<name>` (no `initial_state`:
        that is a signature of its own)."""
        names = ("probe", "reset_state", "serving_default", "serving_default_unfused", "step")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    @classmethod
    def from_saved_model(cls, loaded: Any, metadata: dict) -> "TFLiteFunctions":
        """The functions a tfrnn export stored (`stored`), from the loaded SavedModel."""
        stored = {name: getattr(loaded, STORED_PREFIX + name) for name in metadata["tflite_functions"]}
        return cls(
            batch=metadata["tflite_batch_size"],
            serving_default=stored["serving_default"],
            serving_default_unfused=stored.get("serving_default_unfused"),
            probe=stored["probe"],
            step=stored.get("step"),
            initial_state=loaded.signatures.get("initial_state"),
            reset_state=stored.get("reset_state"),
        )


@dataclasses.dataclass(frozen=True)
class FunctionSet:
    """What an export saves: its signatures and (optionally) the TFLite functions."""

    serving: ServingFunctions
    tflite: Optional[TFLiteFunctions]

    def tflite_names(self) -> list[str]:
        """The stored TFLite functions' names (the metadata's `tflite_functions`)."""
        return sorted(self.tflite.stored()) if self.tflite is not None else []

    def saved_root(self) -> tf.Module:
        """The object to save: the TFLite functions as `tflite_<name>`, every variable."""
        root = tf.Module()
        stored = self.tflite.stored() if self.tflite is not None else {}
        for name, function in stored.items():
            setattr(root, STORED_PREFIX + name, function)
        functions = list(self.serving.as_dict().values()) + list(stored.values())
        found = {v.ref(): v for function in functions for v in function.variables}
        root.tracked_variables = [ref.deref() for ref in found]
        return root


def trace_serving(signatures: ModelSignatures, *, jit_compile: bool, step: bool) -> ServingFunctions:
    """The serving signatures (`step` and `initial_state` only with `step`)."""
    options = TraceOptions(jit_compile=jit_compile)
    batch = signatures.stateful_batch()
    return ServingFunctions(
        serving_default=signatures.serving_default(options, batch).get_concrete_function(),
        step=signatures.step(options).get_concrete_function() if step else None,
        initial_state=signatures.initial_state().get_concrete_function() if step else None,
        reset_state=_reset_state(signatures),
    )


def trace_tflite(
    signatures: ModelSignatures,
    *,
    batch: Optional[int],
    step: bool,
    fuse_lstm: bool,
    serving: Optional[ServingFunctions] = None,
) -> TFLiteFunctions:
    """The TFLite functions at `batch` (see the module docstring).

    Args:
      signatures: the model's signatures.
      batch: the fixed batch, or `None` for a dynamic one.
      step: include `step` (and `initial_state`).
      fuse_lstm: trace plain LSTMs as the composite function (and an unfused twin).
      serving: the export's serving signatures, whose `initial_state` and `reset_state`
        (batch-free) are reused rather than traced twice.
    """
    fused = TraceOptions(jit_compile=False, tflite=True, fuse_lstm=fuse_lstm)
    unfused = TraceOptions(jit_compile=False, tflite=True, fuse_lstm=False)
    probe = TraceOptions(jit_compile=False, tflite=True, fuse_lstm=True, probe_cell_state=True)
    twin = fuse_lstm and any(composite_lstm.eligible(getattr(r.rnn, "cell", None)) for r in signatures.records)
    if serving is not None:
        initial_state, reset_state = serving.initial_state, serving.reset_state
    else:
        initial_state = signatures.initial_state().get_concrete_function() if step else None
        reset_state = _reset_state(signatures)
    return TFLiteFunctions(
        batch=batch,
        serving_default=signatures.serving_default(fused, batch).get_concrete_function(),
        serving_default_unfused=signatures.serving_default(unfused, batch).get_concrete_function() if twin else None,
        probe=signatures.probe(probe, batch).get_concrete_function(),
        step=signatures.step(unfused, batch).get_concrete_function() if step else None,
        initial_state=initial_state if step else None,
        reset_state=reset_state,
    )


def trace(
    signatures: ModelSignatures,
    *,
    jit_compile: bool,
    step: bool,
    tflite_batch: Optional[int],
    fuse_lstm: bool,
) -> FunctionSet:
    """Everything an export saves; no TFLite functions when `tflite_batch` is `None`."""
    serving = trace_serving(signatures, jit_compile=jit_compile, step=step)
    tflite = None
    if tflite_batch is not None:
        tflite = trace_tflite(signatures, batch=tflite_batch, step=step, fuse_lstm=fuse_lstm, serving=serving)
    return FunctionSet(serving, tflite)


def _reset_state(signatures: ModelSignatures) -> Optional[ConcreteFunction]:
    return signatures.reset_state().get_concrete_function() if signatures.stateful else None
