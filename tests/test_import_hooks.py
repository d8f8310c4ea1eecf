"""import_hooks.when_imported: a callback once a module is imported, without importing it."""

import sys
import types

from tfrnn._keras_common.import_hooks import when_imported


def test_the_callback_runs_now_for_an_imported_module_and_after_the_import_otherwise(tmp_path, monkeypatch):
    calls = []
    when_imported("sys", lambda: calls.append("sys"))
    assert calls == ["sys"]
    (tmp_path / "tfrnn_hook_probe.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def seen():
        calls.append(sys.modules["tfrnn_hook_probe"].VALUE)  # the module has run by then

    when_imported("tfrnn_hook_probe", seen)
    assert calls == ["sys"] and "tfrnn_hook_probe" not in sys.modules
    import tfrnn_hook_probe  # noqa: F401

    assert calls == ["sys", 42]
    assert not any(getattr(f, "name", None) == "tfrnn_hook_probe" for f in sys.meta_path)
    del sys.modules["tfrnn_hook_probe"]
    assert isinstance(tfrnn_hook_probe, types.ModuleType)
