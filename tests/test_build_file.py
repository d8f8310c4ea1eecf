"""BUILD mirrors the code, and the code keeps its layers: what may import what.

Bazel cannot fetch its rule sets offline here, so this test is what keeps BUILD honest: it
parses BUILD (Starlark is Python syntax), derives the expected targets from the imports of
every file, and prints the stanza expected for anything missing or stale. A module's target
is its path below `tfrnn/` without `.py` (`rnn`, `_core/fast_loop`, `tf_keras/layers`; a
package's `__init__.py` is the package's name, and `tfrnn/__init__.py` is `tfrnn`).
`python tests/test_build_file.py` rewrites BUILD from the imports, deliberately.

The layers (the README's "cells -> loop -> RNN -> adapters / export / TFLite"): a core module
imports only core modules of its own rank or below; nothing in the core imports an adapter,
the export or TFLite code; only the adapters import Keras, and only the deployment code
imports LiteRT; the adapters and the deployment code do not import each other; `tools/` and
the README's examples use public names only.
"""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tfrnn"
HELPERS_TARGET = "test_support"

# Core ranks: a core module may import core modules of its own rank or a lower one.
CORE_RANKS = {
    0: ["_core", "_core/activations", "_core/initializers", "_core/dropout", "_core/state_spec",
        "_core/distribute", "_core/arguments", "_core/variables", "_core/time_axis", "bucketing"],
    1: ["cell", "_core/builtin_cell", "simple_rnn_cell", "lstm_cell", "gru_cell",
        "_core/cell_adapter", "stacked_cells", "conv_lstm_cell", "trainable_initial_state"],
    2: ["loop", "_core/fast_loop", "_core/native_kernels", "_core/recompute"],
    3: ["_core/trace_context", "_core/plan", "_core/paths", "_core/functions", "_core/stateful",
        "rnn"],
    4: ["bidirectional"],
}  # fmt: skip
RANK = {target: rank for rank, targets in CORE_RANKS.items() for target in targets}
ADAPTER_PREFIXES = ("keras", "tf_keras", "_keras_common")
DEPLOY_PREFIXES = ("export", "tflite", "_deploy")
KERAS_PACKAGES = {"keras", "tf_keras"}


def _group(target):
    if target == "tfrnn":
        return "facade"
    head = target.split("/")[0]
    if head in ADAPTER_PREFIXES:
        return "adapter"
    if head in DEPLOY_PREFIXES:
        return "deploy"
    return "core"


def _target_of_file(path):
    relative = path.relative_to(PACKAGE).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return "/".join(parts) or "tfrnn"


def _package_files():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _module_target(dotted):
    """The target of module `tfrnn.a.b` (`a/b`), or None if no such file exists."""
    parts = dotted.split(".")[1:]
    if not parts:
        return "tfrnn"
    base = PACKAGE.joinpath(*parts)
    if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
        return "/".join(parts)
    return None


def _imports(path):
    """`(tfrnn module targets, third-party top-level packages, helper modules)` `path` uses.

    String constants naming a tfrnn module count too: they are the lazily loaded ones.
    """
    targets, packages, helpers = set(), set(), set()
    helper_names = {p.stem for p in (ROOT / "tests").glob("*.py") if not p.name.startswith("test_")}
    for node in ast.walk(ast.parse(path.read_text())):
        dotted = []
        if isinstance(node, ast.Import):
            dotted = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] == "tfrnn":
                for alias in node.names:
                    child = _module_target(f"{node.module}.{alias.name}")
                    targets.add(child or _module_target(node.module))
            else:
                dotted = [node.module]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if re.fullmatch(r"tfrnn(\.\w+)+", node.value) and _module_target(node.value):
                targets.add(_module_target(node.value))
        for name in dotted:
            head = name.split(".")[0]
            if head == "tfrnn":
                targets.add(_module_target(name) or "tfrnn")
            elif head in helper_names:
                helpers.add(head)
            else:
                packages.add(head)
    return targets, packages, helpers


def _deps_of(path):
    """The BUILD deps that the imports of `path` call for."""
    targets, _, helpers = _imports(path)
    deps = {f":{t}" for t in targets}
    if path.is_relative_to(PACKAGE):
        deps.discard(f":{_target_of_file(path)}")
    if path.parent.name == "tests" and helpers and path.name.startswith("test_"):
        deps.add(f":{HELPERS_TARGET}")
    return sorted(deps)


def _expected_targets():
    expected = {}
    for path in _package_files():
        srcs = [str(path.relative_to(ROOT))]
        expected[_target_of_file(path)] = {"rule": "py_library", "srcs": srcs, "deps": _deps_of(path)}
    helper_paths = sorted(p for p in (ROOT / "tests").glob("*.py") if not p.name.startswith("test_"))
    helper_deps = sorted(
        set().union(*(_deps_of(p) for p in helper_paths)) - {f":{HELPERS_TARGET}"}
    )
    expected[HELPERS_TARGET] = {
        "rule": "py_library",
        "srcs": [f"tests/{p.name}" for p in helper_paths],
        "deps": helper_deps,
    }
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        expected[path.stem] = {"rule": "py_test", "srcs": [f"tests/{path.name}"], "deps": _deps_of(path)}
    for path in sorted(p for p in (ROOT / "tools").glob("*.py") if p.name != "__init__.py"):
        expected[f"{path.stem}_tool"] = {"rule": "py_binary", "srcs": [f"tools/{path.name}"], "deps": _deps_of(path)}
    return expected


def _declared_targets():
    tree = ast.parse((ROOT / "BUILD").read_text())
    targets = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.startswith("py_"):
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
            targets[kwargs["name"]] = {
                "rule": node.func.id,
                "srcs": sorted(kwargs.get("srcs", [])),
                "deps": sorted(kwargs.get("deps", [])),
            }
    return targets


HEADER = """\
# Bazel targets for tfrnn, mirroring the modules, tests and tools (native Python rules).
#
# Third-party packages (tensorflow, tf-keras, numpy, pytest, ai-edge-litert) come from the
# Python environment; the deps below are the repository's own. A module's target is its path
# below tfrnn/ (`_core/fast_loop`). tests/test_build_file.py checks that this file lists every
# module, test and tool with the deps its imports call for; `python tests/test_build_file.py`
# rewrites it from the imports.

package(default_visibility = ["//visibility:public"])
"""


def _stanza(name, target):
    testonly = "    testonly = True,\n" if name == HELPERS_TARGET else ""
    text = (
        f'{target["rule"]}(\n    name = "{name}",\n{testonly}'
        f'    srcs = {target["srcs"]},\n    deps = {target["deps"]},\n)'
    )
    return text.replace("'", '"')


def test_build_lists_every_module_test_and_tool_with_the_right_deps():
    declared, expected = _declared_targets(), _expected_targets()
    problems = []
    for name, target in expected.items():
        found = declared.get(name)
        if found != target:
            problems.append(f"expected in BUILD:\n{_stanza(name, target)}\nfound: {found}")
    for name in sorted(set(declared) - set(expected)):
        problems.append(f"stale target in BUILD (no such file): {name}")
    problems.append("(`python tests/test_build_file.py` rewrites BUILD from the imports)")
    assert len(problems) == 1, "\n\n".join(problems)


PACKAGE_FILES = [pytest.param(p, id=_target_of_file(p)) for p in _package_files()]


def _layer_problems(target, targets, packages):
    """What is wrong with module `target` importing tfrnn `targets` and third-party `packages`."""
    group, problems = _group(target), []
    if group == "core":
        if target not in RANK:
            return [f"{target} is a core module without a rank: add it to CORE_RANKS"]
        wrong = sorted(t for t in targets if _group(t) != "core")
        if wrong:
            problems.append(f"core module {target} imports {wrong} (adapters/export/TFLite)")
        higher = sorted(t for t in targets if RANK.get(t, -1) > RANK[target])
        if higher:
            problems.append(f"{target} (rank {RANK[target]}) imports higher-ranked {higher}")
    for mine, theirs in (("adapter", "deploy"), ("deploy", "adapter")):
        wrong = sorted(t for t in targets if group == mine and _group(t) == theirs)
        if wrong:
            problems.append(f"{mine} module {target} imports {theirs} code {wrong}")
    framework = KERAS_PACKAGES & set(packages)
    head = target.split("/")[0]
    if framework and not (head in KERAS_PACKAGES and framework <= {head}):
        problems.append(f"{target} imports {sorted(framework)}; only that Keras' adapter may")
    if "ai_edge_litert" in packages and group != "deploy":
        problems.append(f"{target} imports ai_edge_litert; only the TFLite code may")
    return problems


@pytest.mark.parametrize("path", PACKAGE_FILES)
def test_each_module_imports_only_what_its_layer_may(path):
    targets, packages, _ = _imports(path)
    problems = _layer_problems(_target_of_file(path), targets, packages)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "target, targets, packages, expected",
    [
        ("rnn", {"_deploy/composite_lstm"}, set(), "core module rnn imports"),
        ("cell", {"rnn"}, set(), "imports higher-ranked ['rnn']"),
        ("_core/new_thing", set(), set(), "without a rank"),
        ("_core/plan", set(), {"tf_keras"}, "only that Keras' adapter may"),
        ("tf_keras/layers", set(), {"keras"}, "only that Keras' adapter may"),
        ("tf_keras/layers", {"export"}, set(), "adapter module tf_keras/layers imports deploy"),
        ("_deploy/signatures", {"tf_keras/layers"}, set(), "deploy module"),
        ("rnn", set(), {"ai_edge_litert"}, "only the TFLite code may"),
    ],
)
def test_a_forbidden_import_is_reported(target, targets, packages, expected):
    problems = _layer_problems(target, targets, packages)
    assert any(expected in p for p in problems), problems
    assert not _layer_problems("tf_keras/layers", {"rnn", "_keras_common/weights"}, {"tf_keras"})


def _public_names():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError("tfrnn/__init__.py has no __all__")


def _private_uses(source, public):
    """`tfrnn.X` with X not public, or `tfrnn.X._y` chains, in Python `source`."""
    problems = []
    tree = ast.parse(source)
    inner_chains = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}

    def private(part):
        return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tfrnn":
            parts = node.module.split(".")[1:] + [a.name for a in node.names]
            if any(private(p) for p in parts) or (parts and parts[0] not in public):
                problems.append(f"from {node.module} import ...")
        if isinstance(node, ast.Attribute) and id(node) not in inner_chains:
            chain, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                chain.insert(0, inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id == "tfrnn":
                if private(chain[0]) or chain[0] not in public and not chain[0].startswith("__") \
                        or any(private(part) for part in chain):
                    problems.append("tfrnn." + ".".join(chain))
    return problems


def test_tools_use_only_the_public_api():
    public = _public_names()
    for path in (ROOT / "tools").glob("*.py"):
        assert all(dep == ":tfrnn" for dep in _deps_of(path)), f"{path.name} imports tfrnn internals"
        assert not _private_uses(path.read_text(), public), (path.name, _private_uses(path.read_text(), public))


def test_the_readme_examples_use_only_the_public_api():
    public = _public_names()
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert blocks, "the README has no Python examples"
    for block in blocks:
        assert not _private_uses(block, public), _private_uses(block, public)


def test_a_private_use_is_seen():
    public = {"RNN", "export"}
    assert _private_uses("tfrnn._core.plan.make_plan()", public) == ["tfrnn._core.plan.make_plan"]
    assert _private_uses("from tfrnn._deploy import checks", public)
    assert _private_uses("tfrnn.export.export_saved_model(m, 'x')", public) == []


if __name__ == "__main__":
    stanzas = [_stanza(name, target) for name, target in _expected_targets().items()]
    (ROOT / "BUILD").write_text(HEADER + "\n\n" + "\n\n".join(stanzas) + "\n")
    print(f"wrote {ROOT / 'BUILD'} with {len(stanzas)} targets")
