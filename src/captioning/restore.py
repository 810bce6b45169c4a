"""`caption restore`: back to the last committed results after a failed, interrupted or killed `dvc exp run`.

Touches only what the pipeline writes: `params.yaml`, `dvc.lock`, `metrics/`, `plots/` and the DVC outputs.
Every other change in the workspace (code, notes, new files) is kept. The steps:
1. refuse while a `dvc` command still holds this workspace;
2. a `dvc` killed in `dvc exp run` leaves HEAD detached at the run's baseline: go back to the branch
   there, and drop the run's leftover `refs/exps/exec/*` refs;
3. the committed `params.yaml`, `dvc.lock`, `metrics/` and `plots/`, staged and unstaged (files a run
   added there are removed);
4. `dvc checkout --force`: every DVC output as the committed `dvc.lock` records it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from captioning.io import InputError

PIPELINE_FILES = ("params.yaml", "dvc.lock", "metrics", "plots")
EXEC_REFS = "refs/exps/exec"


def git(root: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise InputError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip() if done.returncode == 0 else ""


def restore_workspace(root: Path) -> list[str]:
    """Bring `root` back to its committed results; return what was done, one line per step."""
    if not (root / "dvc.yaml").exists():
        raise InputError(f"{root}: no dvc.yaml here; run `caption restore` from the project root")
    refuse_while_dvc_runs(root)
    done = [reattach_branch(root), drop_exec_refs(root), restore_pipeline_files(root)]
    checkout = subprocess.run([sys.executable, "-m", "dvc", "checkout", "--force"], cwd=root,
                              capture_output=True, text=True)
    if checkout.returncode != 0:
        raise InputError(f"dvc checkout failed (are the committed outputs in the cache? `dvc pull` fetches "
                         f"them from a remote):\n{checkout.stderr.strip()}")
    done.append("DVC outputs checked out as dvc.lock records them")
    return [line for line in done if line]


def refuse_while_dvc_runs(root: Path) -> None:
    """DVC's lock file names the processes that hold the workspace's outputs."""
    lock = root / ".dvc" / "tmp" / "rwlock"
    try:
        info = json.loads(lock.read_text()) if lock.exists() else {}
    except (OSError, ValueError):
        info = {}
    holders = list(info.get("write", {}).values())
    holders += [e for entries in info.get("read", {}).values() for e in entries]
    alive = {h["pid"]: h.get("cmd", "") for h in holders if isinstance(h, dict) and pid_alive(h.get("pid"))}
    if alive:
        pid, cmd = next(iter(alive.items()))
        raise InputError(f"a dvc command is still running here (pid {pid}: {cmd}); stop it first, "
                         "or wait for it to finish")


def pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reattach_branch(root: Path) -> str:
    """HEAD detached at a killed run's baseline goes back to the one branch that points there."""
    if git(root, "symbolic-ref", "-q", "HEAD", check=False):
        return ""
    baseline = git(root, "rev-parse", "-q", "--verify", f"{EXEC_REFS}/EXEC_BASELINE", check=False)
    head = git(root, "rev-parse", "HEAD")
    if not baseline or baseline != head:
        return ""
    branches = git(root, "for-each-ref", "--points-at", head, "--format=%(refname:short)", "refs/heads").split()
    if len(branches) != 1:
        return (f"HEAD stays detached at {head[:7]}: branches there: {', '.join(branches) or 'none'}; "
                "`git checkout <branch>` yours")
    git(root, "checkout", "-q", branches[0])
    return f"back on branch {branches[0]} (a killed `dvc exp run` had detached HEAD)"


def drop_exec_refs(root: Path) -> str:
    refs = git(root, "for-each-ref", "--format=%(refname)", EXEC_REFS).split()
    for ref in refs:
        git(root, "update-ref", "-d", ref)
    return f"removed {len(refs)} leftover experiment refs" if refs else ""


def restore_pipeline_files(root: Path) -> str:
    tracked = [p for p in PIPELINE_FILES if git(root, "ls-files", "--", p)]
    if tracked:
        git(root, "restore", "--source=HEAD", "--staged", "--worktree", "--", *tracked)
        folders = [p for p in tracked if (root / p).is_dir()]
        if folders:   # never a bare `git clean`: that would remove the user's untracked files
            git(root, "clean", "-fdq", "--", *folders)
    return f"committed {', '.join(tracked)} restored" if tracked else ""
