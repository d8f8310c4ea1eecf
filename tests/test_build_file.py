"""BUILD mirrors the code: a target per module, test and tool, with deps from the imports.

Bazel cannot fetch its rule sets offline here, so this test is what keeps BUILD honest: it
parses BUILD (Starlark is Python syntax), derives the expected targets from the imports of
every file, and prints the stanza expected for anything missing or stale.
`python tests/test_build_file.py` rewrites BUILD from the imports, deliberately.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tfrnn"
HELPERS_TARGET = "test_support"


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


def _package_modules():
    return {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}


def _helper_modules():
    return {p.stem for p in (ROOT / "tests").glob("*.py") if not p.name.startswith("test_")}


def _deps_of(path):
    """The BUILD deps that the imports of `path` call for."""
    modules, helpers = _package_modules(), _helper_modules()
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "tfrnn":
                names = [
                    f"tfrnn.{a.name}" if a.name in modules else "tfrnn" for a in node.names
                ]
            else:
                names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "tfrnn":
                deps.add(f":{parts[1]}" if len(parts) > 1 else ":tfrnn")
            elif parts[0] in helpers and path.parent.name == "tests":
                deps.add(f":{HELPERS_TARGET}")
    own = f":{path.stem}" if path.parent == PACKAGE else None
    deps.discard(own)
    if path.parent.name == "tests" and path.stem in helpers:
        deps.discard(f":{HELPERS_TARGET}")
    return sorted(deps)


def _expected_targets():
    expected = {}
    for path in sorted(PACKAGE.glob("*.py")):
        name = "tfrnn" if path.name == "__init__.py" else path.stem
        expected[name] = {"rule": "py_library", "srcs": [f"tfrnn/{path.name}"], "deps": _deps_of(path)}
    helper_paths = sorted(p for p in (ROOT / "tests").glob("*.py") if not p.name.startswith("test_"))
    helper_deps = sorted(set().union(*(_deps_of(p) for p in helper_paths)))
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


HEADER = """\
# Bazel targets for tfrnn, mirroring the modules, tests and tools (native Python rules).
#
# Third-party packages (tensorflow, tf-keras, numpy, pytest, ai-edge-litert) come from the
# Python environment; the deps below are the repository's own. tests/test_build_file.py
# checks that this file lists every module, test and tool with the deps its imports call
# for; `python tests/test_build_file.py` rewrites it from the imports.

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


def test_tools_use_only_the_public_api():
    for path in (ROOT / "tools").glob("*.py"):
        assert all(dep == ":tfrnn" for dep in _deps_of(path)), f"{path.name} imports tfrnn internals"


def test_only_the_keras_adapter_imports_tf_keras():
    for path in PACKAGE.glob("*.py"):
        if path.stem == "keras":
            continue
        tree = ast.parse(path.read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert "tf_keras" not in imported and "keras" not in imported, path.name


if __name__ == "__main__":
    stanzas = [_stanza(name, target) for name, target in _expected_targets().items()]
    (ROOT / "BUILD").write_text(HEADER + "\n\n" + "\n\n".join(stanzas) + "\n")
    print(f"wrote {ROOT / 'BUILD'} with {len(stanzas)} targets")
