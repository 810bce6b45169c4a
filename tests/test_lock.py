"""The committed dvc.lock is the committed code's: every code file and parameter a stage depends on has the
hash the lock recorded, so the committed metrics and plots come from this code and a colleague's `dvc pull`
then `dvc repro` reruns nothing. Outputs and data missing from a fresh clone are not errors here."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = ("src/", "stages/")


def stale_entries(status: dict) -> list[str]:
    """'stage: what differs' for each code file, parameter or command that differs from dvc.lock."""
    stale = []
    for stage, entries in status.items():
        for entry in entries:
            if entry == "changed command":
                stale.append(f"{stage}: its command differs from dvc.lock")
            if not isinstance(entry, dict):
                continue
            for path, state in entry.get("changed deps", {}).items():
                if isinstance(state, dict):          # params.yaml: {key: "modified" | "new" | "deleted"}
                    stale += [f"{stage}: parameter {key} {how}" for key, how in state.items()]
                elif path.startswith(CODE):
                    stale.append(f"{stage}: {path} {state}")
    return stale


def test_committed_lock_matches_the_code_and_params():
    dvc = Path(sys.executable).parent / "dvc"
    out = subprocess.run([str(dvc), "status", "--json"], cwd=ROOT, capture_output=True, text=True, check=True)
    stale = stale_entries(json.loads(out.stdout[out.stdout.index("{"):]))
    assert not stale, ("dvc.lock does not match the code: run `dvc repro` and commit dvc.lock, metrics/ and "
                       "plots/ with the change:\n" + "\n".join(stale))


def test_a_stale_entry_is_named():
    status = {"train": [{"changed deps": {"src/captioning/train/loop.py": "modified", "data/vocab.json": "deleted",
                                          "params.yaml": {"train.lr": "modified"}}},
                        {"changed outs": {"models": "deleted"}}]}
    assert stale_entries(status) == ["train: src/captioning/train/loop.py modified",
                                     "train: parameter train.lr modified"]
