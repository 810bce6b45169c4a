"""Training state for resume: one file, written atomically, loaded without code execution.

It holds the model, optimizer, scheduler, torch RNG state and the position in the seeded data order,
so a killed `train` continues exactly where its last checkpoint left it. Resume is only for the same
run: the checkpoint records a run key (a digest each of the params, the contents of every input the
stage reads and the code that trains), and any difference starts from scratch, naming what changed.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

import torch

from captioning.io import atomic_path

CHECKPOINT = "checkpoint.pt"


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def run_key(**parts: Any) -> dict[str, str]:
    """What makes a run this run: one digest per named part (params, code, features, captions ...)."""
    return {name: fingerprint(value) for name, value in parts.items()}


def changed_parts(saved: Any, expected: dict[str, str]) -> list[str]:
    saved = saved if isinstance(saved, dict) else {}
    return sorted(k for k in saved.keys() | expected.keys() if saved.get(k) != expected.get(k))


def save_checkpoint(state_dir: Path, state: dict) -> None:
    with atomic_path(Path(state_dir) / CHECKPOINT) as tmp:
        torch.save(state, tmp)


def load_checkpoint(state_dir: Path, expected_key: dict[str, str]) -> Optional[dict]:
    """The saved state if it belongs to this run, else None (a fresh start)."""
    path = Path(state_dir) / CHECKPOINT
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file must not block training: start over, say why
        print(f"train: ignoring unreadable checkpoint {path} ({e}); starting from scratch")
        return None
    changed = changed_parts(state.get("run_key"), expected_key)
    if changed:
        print(f"train: {path} is from another run (changed: {', '.join(changed)}); starting from scratch")
        return None
    return state


def resume_hint(state_dir: Path) -> str:
    """Where an interrupted run stopped and how to go on from there."""
    path = Path(state_dir) / CHECKPOINT
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        where = f"epoch {saved['epoch'] + 1}, batch {saved['batch']} (step {saved['step']})"
    except Exception:  # no checkpoint yet, or one being replaced: nothing to resume
        return f"train: stopped before its first checkpoint in {state_dir}; the next run starts from scratch"
    return (f"train: stopped; {path} holds {where}. The same `dvc repro` or "
            "`dvc exp run` (same params, code and data) resumes from there")
