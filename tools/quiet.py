"""Keeps TensorFlow's and LiteRT's C++ log lines out of the tools' output (unless `--verbose`).

`import tensorflow` in TensorFlow 2.21 writes "All log messages before absl::InitializeLog()
is called are written to STDERR", the oneDNN notice and the CUDA-driver notices straight to
file descriptor 2, before any log level (TF_CPP_MIN_LOG_LEVEL, absl's) is read; LiteRT
announces its XNNPACK delegate the same way. So the tools run with descriptor 2 kept back
in a temporary file, and show what it holds only when something failed (an exception, or a
non-zero exit status): nothing a user needs is lost.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator


class KeptBack:
    """What a `stderr_kept_back` block sets: `failed = True` shows the kept lines."""

    failed = False


def verbose_requested(argv=None) -> bool:
    return "--verbose" in (sys.argv[1:] if argv is None else argv)


@contextlib.contextmanager
def stderr_kept_back(verbose: bool = False) -> Iterator[KeptBack]:
    """Within the block, file descriptor 2 goes to a temporary file, shown on failure."""
    box = KeptBack()
    if verbose:
        yield box
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read once, when TensorFlow loads
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as kept:
        os.dup2(kept.fileno(), 2)
        try:
            yield box
        except BaseException:
            box.failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if box.failed:
                kept.seek(0)
                sys.stderr.write(kept.read().decode(errors="replace"))
                sys.stderr.flush()
