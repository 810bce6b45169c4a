"""One real `dvc repro` of a tiny configuration, in a fresh git+DVC copy of the project."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

pytestmark = pytest.mark.slow
METRIC_KEYS = {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider"}
TINY = {
    "data": {"synthetic": {"train": 48, "val": 24, "size": 96}},
    "subset": {"train": 40, "val": 10, "test": 10},
    "resize": {"size": 96},
    "vocab": {"threshold": 1},
    "features": {"batch_size": 16},
    "train": {"epochs": 1, "batch_size": 16, "embed_dim": 32, "hidden_dim": 32},
    "plot": {"examples": 4},
}


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(base.get(k, {}), v) if isinstance(v, dict) else v
    return out


def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


def stages_run(log: str) -> set[str]:
    return set(re.findall(r"Running stage '([a-z]+)'", log))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", "params.yaml", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, work / name)
    for folder in ("stages", "src"):
        shutil.copytree(ROOT / folder, work / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (work / ".gitignore").write_text((ROOT / ".gitignore").read_text())
    run(["git", "init", "-q"], work)
    run(["git", "config", "user.email", "t@example.com"], work)
    run(["git", "config", "user.name", "test"], work)
    run(["dvc", "init", "-q"], work)
    run(["dvc", "config", "core.analytics", "false"], work)
    run(["git", "add", "-A"], work)
    run(["git", "commit", "-qm", "init"], work)
    log = run(["dvc", "repro"], work)
    (work / "repro.log").write_text(log)
    return work


def test_repro_runs_every_stage_and_writes_metrics(project):
    log = (project / "repro.log").read_text()
    assert stages_run(log) == {"download", "filter", "resize", "vocab", "features", "train", "decode", "evaluate", "plot"}
    metrics = json.loads((project / "metrics" / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics) and metrics["split"] == "test" and metrics["images"] == 10
    for png in ("loss", "scores", "words", "examples"):
        assert (project / "plots" / f"{png}.png").stat().st_size > 1000
    assert (project / "models" / "model.safetensors").exists()


def test_nothing_to_do_after_repro(project):
    out = run(["dvc", "status"], project)
    assert "up to date" in out.lower(), out


def test_exp_run_reruns_only_downstream_of_train(project):
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "repro"], project)
    log = run(["dvc", "exp", "run", "-S", "train.epochs=2"], project)
    assert stages_run(log) == {"train", "decode", "evaluate", "plot"}, log[-2000:]
    shown = run(["dvc", "exp", "show", "--no-pager", "--md"], project)
    assert "bleu_4" in shown
