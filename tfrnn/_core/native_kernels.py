"""When a fast-loop call runs on TensorFlow's native kernels instead of XLA:CPU.

XLA:CPU compiles bfloat16 matmuls into code several times slower than TensorFlow's own
kernels (oneDNN, which uses the CPU's AVX-512 BF16 or AMX instructions), and slower than its
own float32 code: under XLA a bfloat16 RNN on a CPU runs slower than a float32 one. The fast
loop (`_core.fast_loop`) without XLA runs every matmul, the recurrent ones included, on those
native kernels, and once a step's recurrent matmul is large enough that wins by more than the
per-op cost of running a loop without a compiler. So on a machine whose only devices are CPUs
with bfloat16 instructions, a bfloat16 call of at least `TRAINING_MACS` recurrent
multiply-adds per step (`INFERENCE_MACS` when no gradient is taken: the backward pass gains
the most) runs the fast loop in a plain `tf.function`, whatever the RNN's `jit_compile` says.
TensorFlow's own elementwise kernels are in turn several times slower than XLA's code, so from
`COMPILED_STEPS_SIZE` pre-activations per step (`compiles_steps`) each step's gate math is an
XLA-compiled function called from the native loop (`paths.Path.NATIVE`); below it, launching
that function per step costs more than it saves.

A call already inside the caller's `jit_compile` function stays in XLA (it is one cluster), as
does every call on a machine with a GPU or TPU, where XLA's bfloat16 is the fast one.
Float16 is left to XLA: measured, the native kernels gain nothing on CPUs without float16
arithmetic. The thresholds and what was measured: docs/performance.md, "bfloat16 on the
native kernels".
"""

from __future__ import annotations

import functools
from typing import Callable, Optional

import tensorflow as tf

from tfrnn._core.builtin_cell import in_xla_context

# Recurrent multiply-adds per step (batch rows x the recurrent kernel's size) from which the
# native kernels win: with a gradient (training), and without (inference).
TRAINING_MACS = 2**20
INFERENCE_MACS = 2**24
# Pre-activations per step (batch rows x the recurrent kernel's width) from which such a call
# also compiles each step's gate math with XLA (`paths.Path.NATIVE`): below it, the per-step
# launch of the compiled function costs more than TensorFlow's own elementwise kernels.
COMPILED_STEPS_SIZE = 2**17
# Traced with an unknown batch (Keras' `fit` may leave it so), the step is sized for this many.
ASSUMED_BATCH = 32

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def native_wins(
    dtype: tf.DType,
    batch: Optional[int],
    recurrent_macs: Callable[[], int],
    differentiated: Callable[[], bool],
) -> bool:
    """Whether a fast-loop call runs faster on the native kernels than under XLA.

    Args:
      dtype: the call's compute dtype.
      batch: its static batch size, `None` if unknown while tracing.
      recurrent_macs: returns the multiply-adds of one batch row's recurrent matmuls per step.
      differentiated: returns whether a gradient may be taken of the call.
        Both are asked only for a bfloat16 call, so a float32 call pays nothing for the rule.
    """
    if dtype != tf.bfloat16 or in_xla_context():
        return False
    macs = recurrent_macs()
    if macs <= 0:
        return False
    rows = ASSUMED_BATCH if batch is None else batch
    threshold = TRAINING_MACS if differentiated() else INFERENCE_MACS
    return rows * macs >= threshold and cpus_with_bfloat16()


def compiles_steps(batch: Optional[int], width: int) -> bool:
    """Whether a call that `native_wins` takes also compiles each step's gate math.

    Args:
      batch: the call's static batch size, `None` if unknown while tracing.
      width: the recurrent kernel's width, the pre-activations per batch row and step.
    """
    rows = ASSUMED_BATCH if batch is None else batch
    return rows * width >= COMPILED_STEPS_SIZE


@functools.lru_cache(maxsize=None)
def cpus_with_bfloat16() -> bool:
    """Whether this machine's only devices are CPUs, and they have bfloat16 instructions."""
    if any(d.device_type not in ("CPU",) for d in tf.config.list_logical_devices()):
        return False
    return bool(set(_cpu_flags()) & set(_BF16_FLAGS))


def _cpu_flags() -> list[str]:
    """The CPU's feature flags as Linux reports them (none elsewhere: XLA is kept)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return line.split(":", 1)[1].split()
    except OSError:
        pass
    return []
