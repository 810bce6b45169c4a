"""DVC's own overhead: `dvc repro` when nothing changed, and after a change to train.epochs (only the
stages downstream of train may run), against the first full run, in a fresh clone on a small
configuration of the offline default dataset.

python bench/dvc_overhead.py [--repo .]
The clone is of the committed HEAD; `dvc` and `python` are this interpreter's (.venv).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

SMALL = {"data": {"synthetic": {"train": 300, "val": 100}}, "subset": {"train": 200, "val": 40, "test": 40},
         "train": {"epochs": 2}}


def merge(base: dict, extra: dict) -> dict:
    for k, v in extra.items():
        base[k] = merge(base.get(k, {}), v) if isinstance(v, dict) else v
    return base


def repro(cwd: Path, env: dict) -> tuple[float, list[str]]:
    start = time.perf_counter()
    done = subprocess.run(["dvc", "repro"], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"dvc repro failed in {cwd}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start, re.findall(r"Running stage '([^']+)'", done.stdout)


def set_params(cwd: Path, extra: dict) -> None:
    path = cwd / "params.yaml"
    path.write_text(yaml.safe_dump(merge(yaml.safe_load(path.read_text()), extra), sort_keys=False))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    args = ap.parse_args()
    print(describe())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", args.repo, str(clone)], check=True)
        set_params(clone, SMALL)
        full, full_stages = repro(clone, env)
        noop = [repro(clone, env) for _ in range(3)]
        set_params(clone, {"train": {"epochs": 3}})
        changed, changed_stages = repro(clone, env)
    noop_s = sorted(t for t, _ in noop)[1]
    print(f"\nsmall default configuration: {SMALL}")
    print("\n| run | seconds | stages run |\n|---|---|---|")
    print(f"| first `dvc repro` | {full:.1f} | {', '.join(full_stages)} |")
    print(f"| `dvc repro`, nothing changed (median of 3) | {noop_s:.2f} | {', '.join(noop[1][1]) or 'none'} |")
    print(f"| `dvc repro` after train.epochs 2 -> 3 | {changed:.1f} | {', '.join(changed_stages)} |")
    print(f"ratio: a no-op repro takes {noop_s / full:.1%} of the full run; target under 3 s: "
          f"{'met' if noop_s < 3 else 'not met'}")


if __name__ == "__main__":
    main()
