"""Runs a function once a module has been imported, without importing it.

tfrnn loads its Keras adapters lazily, yet their layers must be registered with their Keras
before `load_model` reads a file that names them. So `import tfrnn` asks for the adapter to
be imported as soon as its Keras is: right away if it already is, else just after its import.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import sys
from typing import Callable


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds `name` as Python would, and runs `callback` after its module has executed."""

    def __init__(self, name: str, callback: Callable[[], None]):
        self.name = name
        self.callback = callback

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # once; and the search below must not find us again
        spec = importlib.util.find_spec(fullname)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        @functools.wraps(exec_module)
        def exec_then_call(module):
            exec_module(module)
            self.callback()

        loader.exec_module = exec_then_call
        return spec


def when_imported(name: str, callback: Callable[[], None]) -> None:
    """Calls `callback()` now if module `name` is imported, else right after its import."""
    if name in sys.modules:
        callback()
        return
    if not any(isinstance(f, _AfterImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, callback))
