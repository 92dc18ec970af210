"""Imports run one way: pipeline/ -> components/ -> trainer/ -> core/ (fast tier).

Parses every module's imports (top level and inside functions) rather than importing it, so a
lazy import inside a function counts too.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# What each folder may import from the package, itself included.
ALLOWED = {
    "core": {"core"},
    "trainer": {"trainer", "core"},
    "components": {"components", "trainer", "core"},
    "pipeline": {"pipeline", "components", "trainer", "core", "schema"},
}


def package_imports(path: pathlib.Path) -> set[str]:
    """The offline_recall top-level folders a module imports: {"core", "trainer", ...}."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "offline_recall" and len(parts) > 1 and parts[1] in ALLOWED:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_no_module_imports_a_layer_above_its_own(folder):
    wrong = {
        str(path.relative_to(ROOT)): sorted(package_imports(path) - ALLOWED[folder])
        for path in sorted((ROOT / folder).rglob("*.py"))
    }
    assert {path: up for path, up in wrong.items() if up} == {}


def test_the_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from offline_recall.pipeline import cli\n")
    assert package_imports(module) == {"pipeline"}
