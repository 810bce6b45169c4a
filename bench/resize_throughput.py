"""Resize stage throughput: one worker process against every core, on the real coco_mini images.

Usage: python bench/resize_throughput.py [--repeat 10] [--size 224] [--mode squash]
Each image list is repeated so that the timed part lasts a few seconds; outputs go to a temporary folder.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from captioning.data.images import resize_split  # noqa: E402

COCO_MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_mini"


def images(repeat: int) -> list[dict]:
    files = sorted(COCO_MINI.glob("*2017/*.jpg"))
    if not files:
        sys.exit(f"no images under {COCO_MINI} (see shared/data/README.md)")
    return [{"id": r * 1_000_000 + i, "path": str(f)} for r in range(repeat) for i, f in enumerate(files)]


def timed(jobs: list[dict], workers: int, size: int, mode: str) -> float:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        report = resize_split(jobs, out, size, mode, workers)
        seconds = time.perf_counter() - start
    assert report["written"] == len(jobs), report
    return len(jobs) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--mode", default="squash", choices=["squash", "crop"])
    args = parser.parse_args()
    jobs = images(args.repeat)
    cores = len(os.sched_getaffinity(0))
    print(describe())
    print(f"resize {len(jobs)} coco_mini JPEGs (about 256 px shorter side) to {args.size} px, {args.mode}")
    timed(jobs[:20], 1, args.size, args.mode)            # warm the page cache and imports
    one = timed(jobs, 1, args.size, args.mode)
    every = timed(jobs, cores, args.size, args.mode)
    print(f"| workers | images/s |\n|---|---|\n| 1 | {one:.0f} |\n| {cores} | {every:.0f} |")
    print(f"ratio ({cores} workers / 1): {every / one:.2f}x")


if __name__ == "__main__":
    main()
