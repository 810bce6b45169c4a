"""A fresh git+DVC copy of the project with some parameters overridden, for end-to-end tests."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(base.get(k, {}), v) if isinstance(v, dict) else v
    return out


def project_env(cwd: Path) -> dict:
    """The venv's commands first; a project copy runs its own src/ (as a user's clone does), not the
    installed package's."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    if (Path(cwd) / "src" / "captioning").is_dir():
        env["PYTHONPATH"] = str(Path(cwd).resolve() / "src")
    return env


def run(cmd: list[str], cwd: Path) -> str:
    env = project_env(cwd)
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


def create_project(work: Path, overrides: dict) -> Path:
    """Copy the pipeline (code, dvc.yaml, params.yaml with `overrides`) into `work`, git and DVC initialised."""
    for name in ("dvc.yaml", "params.yaml", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, work / name)
    for folder in ("stages", "src"):
        shutil.copytree(ROOT / folder, work / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), overrides)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (work / ".gitignore").write_text((ROOT / ".gitignore").read_text())
    run(["git", "init", "-q"], work)
    run(["git", "config", "user.email", "t@example.com"], work)
    run(["git", "config", "user.name", "test"], work)
    run(["dvc", "init", "-q"], work)
    shutil.copy(ROOT / ".dvcignore", work / ".dvcignore")
    run(["dvc", "config", "core.analytics", "false"], work)
    run(["git", "add", "-A"], work)
    run(["git", "commit", "-qm", "init"], work)
    return work
