"""The one comparison every deployment check uses: named outputs, finite, same shapes, close.

An export compares the reloaded SavedModel with the model in memory, a conversion compares
LiteRT with TensorFlow, and `tools/main.py` compares every runtime with TensorFlow (through
`tfrnn.export.check_outputs`). All of them go through `compare`, which fails — with one
`CheckFailed` built by `check_failed` — when an expected output is missing, when shapes
differ, when any compared value is NaN or infinite (on either side: `max(0.0, nan)` is
`0.0`, so an error that is only accumulated would let a NaN model through), or when the
largest difference exceeds the tolerance.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

NOTHING_WRITTEN = "nothing was written"


class CheckFailed(ValueError):
    """A deployment check found outputs that differ, are missing, misshapen or not finite."""


def check_failed(
    check: str,
    output: Optional[str],
    reason: str,
    *,
    hint: str = "",
    consequence: Optional[str] = NOTHING_WRITTEN,
) -> CheckFailed:
    """The error of a failed check: which check, which output, why, and what was not done.

    Args:
      check: the check, e.g. `"export check of serving_default (reloaded vs. in memory)"`.
      output: the output's name, or `None` when the failure is not about one output.
      reason: what is wrong, e.g. `"differs by 0.3 (> 1e-05)"`.
      hint: what the user can do about it (appended as a sentence).
      consequence: e.g. `"nothing was written"`; `None` leaves it out.
    """
    text = f"{check} failed: " + (f"output {output!r} {reason}" if output is not None else reason)
    if consequence:
        text += f"; {consequence}"
    if hint:
        text += f". {hint}"
    return CheckFailed(text)


def _not_finite(values: np.ndarray) -> Optional[str]:
    """`"NaN at [i, j]"` / `"Inf at [...]"` for the first non-finite value, else `None`."""
    if values.dtype.kind not in "fc":
        return None
    bad = ~np.isfinite(values)
    if not bad.any():
        return None
    index = [int(i) for i in np.unravel_index(int(np.argmax(bad)), values.shape)]
    kind = "NaN" if np.isnan(values[tuple(index)]) else "Inf"
    return f"{kind} at {index}"


def _as_array(value: Any) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def compare(
    actual: Mapping[str, Any],
    expected: Mapping[str, Any],
    *,
    check: str,
    tolerance: float,
    actual_name: str = "actual",
    expected_name: str = "expected",
    hint: str = "",
    consequence: Optional[str] = NOTHING_WRITTEN,
) -> float:
    """The largest absolute difference over `expected`'s outputs; raises unless it is sound.

    Every output named in `expected` must be in `actual` with the same shape, and every value
    of both must be finite; outputs only `actual` has are not compared.

    Args:
      actual, expected: `{name: array or tensor}`.
      check: names the check in the error (see `check_failed`).
      tolerance: the largest absolute difference allowed.
      actual_name, expected_name: what produced each side, for the error
        (`"LiteRT"`, `"TensorFlow"`).
      hint, consequence: as in `check_failed`; `hint` only for a difference over the tolerance.

    Returns:
      The largest absolute difference, a finite float (0.0 when every output is empty).

    Raises:
      CheckFailed: an output is missing, misshapen or not finite, or differs by more than
        `tolerance`; or `expected` is empty (a check of nothing cannot fail).
    """

    def fail(output, reason, with_hint=False):
        return check_failed(check, output, reason, hint=hint if with_hint else "", consequence=consequence)

    if not expected:
        raise fail(None, f"there are no {expected_name} outputs to compare with")
    error = 0.0
    for name, value in expected.items():
        if name not in actual:
            raise fail(name, f"is missing from {actual_name}'s outputs {sorted(actual)}")
        a, b = _as_array(actual[name]), _as_array(value)
        if a.shape != b.shape:
            raise fail(name, f"has shape {list(a.shape)} in {actual_name}, {list(b.shape)} in {expected_name}")
        for side, values in ((expected_name, b), (actual_name, a)):
            where = _not_finite(values)
            if where is not None:
                raise fail(name, f"is not finite in {side}: {where}")
        if a.size:
            difference = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
            if not difference <= tolerance:
                raise fail(name, f"differs by {difference:.3g} (> {tolerance:g})", with_hint=True)
            error = max(error, difference)
    return error
