"""Feature extraction speed: the features stage's way (traced + frozen encoder, batch 16) against plain
eager PyTorch with batch 64, same images, same encoder, and the same numbers out.

python bench/feature_extraction.py [--images 256] [--encoder efficientnet_lite0]
Images are the synthetic dataset's (generated into a temporary folder); JPEG decoding is included.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from captioning.data.synthetic import generate_synthetic  # noqa: E402
from captioning.features.extract import extract_split  # noqa: E402
from captioning.features.store import FeatureStore  # noqa: E402
from captioning.models.encoders import ENCODERS  # noqa: E402


def timed(images: Path, ids: list[int], out: Path, encoder: str, batch: int, optimise: bool) -> float:
    start = time.perf_counter()
    extract_split(images, ids, out, encoder, "imagenet", batch, "cpu", optimise=optimise)
    return len(ids) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--encoder", default="efficientnet_lite0", choices=sorted(ENCODERS))
    args = ap.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_synthetic(tmp / "raw", args.images, 1, 224, seed=0)
        folder = tmp / "raw" / "train2017"
        ids = list(range(len(list(folder.glob("*.jpg")))))
        links = tmp / "images"            # the features stage reads <id>.jpg
        links.mkdir()
        for i, f in enumerate(sorted(folder.glob("*.jpg"))):
            (links / f"{i}.jpg").symlink_to(f)
        timed(links, ids[:32], tmp / "warm", args.encoder, 16, True)
        eager = timed(links, ids, tmp / "eager", args.encoder, 64, False)
        fast = timed(links, ids, tmp / "fast", args.encoder, 16, True)
        a, b = FeatureStore(tmp / "eager"), FeatureStore(tmp / "fast")
        diff = float(np.abs(np.asarray(a.pooled, np.float32) - np.asarray(b.pooled, np.float32)).max())
    print(f"\n{args.encoder}, {len(ids)} images of 224 px, CPU, JPEG decoding included")
    print("| way | images/s |\n|---|---|")
    print(f"| eager, batch 64 | {eager:.1f} |\n| traced + frozen, batch 16 (the stage) | {fast:.1f} |")
    print(f"ratio: {fast / eager:.2f}x; largest pooled-feature difference {diff:.4f} (float16 storage)")


if __name__ == "__main__":
    main()
