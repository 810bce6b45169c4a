"""Which of the package's source files a module runs, read from its import statements.

Two users: the train stage's resume key hashes the files that train (a checkpoint from other code is not
resumed), and a test checks that each stage's `deps` in dvc.yaml cover the files its script imports (a
fix to a module reruns every stage that runs it). Imports inside functions count too: they run when
their branch does (vit_gpt2's trainer, say).
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path
from typing import Iterable

PACKAGE = "captioning"
PACKAGE_DIR = Path(__file__).resolve().parent


def _module_file(name: str, package_dir: Path) -> Path | None:
    """`captioning.a.b` -> its file (a module or a package's __init__.py), or None if it is not one."""
    parts = name.split(".")[1:]
    base = package_dir.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(file: Path) -> set[str]:
    """Dotted names of the package's modules that `file` imports (`from pkg.x import y` may name module y)."""
    names = set()
    tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
    # A module-level __getattr__ (PEP 562) imports only when that attribute is asked for: the package's
    # lazy `Captioner` is not code the stages run.
    lazy = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"]
    skipped = {id(n) for f in lazy for n in ast.walk(f)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")}


def _with_parents(name: str) -> list[str]:
    """Importing `pkg.a.b` runs pkg/__init__.py and pkg/a/__init__.py first."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _has_code(file: Path) -> bool:
    """False for a package's __init__.py that holds only its docstring: nothing in it can change a result."""
    body = ast.parse(file.read_text(encoding="utf-8")).body
    return not (file.name == "__init__.py" and len(body) <= 1 and all(
        isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body))


def imported_files(entry: Path, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """`entry` (a script or one of the package's modules) and every package file with code it imports,
    transitively."""
    seen: set[Path] = set()
    todo = [Path(entry).resolve()]
    while todo:
        file = todo.pop()
        if file in seen:
            continue
        seen.add(file)
        for name in _imported_names(file):
            for module in _with_parents(name):
                found = _module_file(module, package_dir)
                if found is not None and found not in seen:
                    todo.append(found)
    return sorted(f for f in seen if _has_code(f))


def source_digest(files: Iterable[Path], root: Path = PACKAGE_DIR) -> str:
    """A hash of the files' paths (relative to `root`) and contents: changes when any of them does."""
    h = hashlib.sha256()
    for file in sorted(Path(f).resolve() for f in files):
        h.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes() + b"\0")
    return h.hexdigest()[:20]


def module_digest(module_file: Path) -> str:
    """The digest of a module of this package and everything it imports: the code a stage runs."""
    return source_digest(imported_files(module_file))
