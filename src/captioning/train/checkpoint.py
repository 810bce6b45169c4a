"""Training state for resume: one file, written atomically, loaded without code execution.

It holds the model, optimizer, scheduler, torch RNG state and the position in the seeded data order,
so a killed `train` continues exactly where its last checkpoint left it. A fingerprint of the params
and inputs guards against resuming a run that trained something else.
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


def save_checkpoint(state_dir: Path, state: dict) -> None:
    with atomic_path(Path(state_dir) / CHECKPOINT) as tmp:
        torch.save(state, tmp)


def load_checkpoint(state_dir: Path, expected_fingerprint: str) -> Optional[dict]:
    """The saved state if it belongs to this run, else None (a fresh start)."""
    path = Path(state_dir) / CHECKPOINT
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file must not block training: start over, say why
        print(f"train: ignoring unreadable checkpoint {path} ({e}); starting from scratch")
        return None
    if state.get("fingerprint") != expected_fingerprint:
        print(f"train: {path} is from other params or inputs; starting from scratch")
        return None
    return state
