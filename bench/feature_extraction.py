"""Feature extraction speed: the features stage's way (traced + frozen encoder, batch 16) against plain
eager PyTorch with batch 64, same images, same encoder, and the same numbers out.

python bench/feature_extraction.py [--images 256] [--encoder efficientnet_lite0] [--weights imagenet]
Images are the synthetic dataset's (generated into a temporary folder); JPEG decoding is included.
Also: the floor set by the encoder's FLOPs (counted by torch.utils.flop_counter) and this machine's
measured float32 matrix-multiply rate, and whether JPEG decoding alone (one DataLoader worker) is faster
than the CNN alone, i.e. whether decoding keeps the CNN fed. `--weights none` times an encoder whose
ImageNet weights are not on this machine (same speed, random weights).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, matmul_gflops  # noqa: E402

from captioning.data.synthetic import generate_synthetic  # noqa: E402
from captioning.features.extract import (  # noqa: E402
    ImageFolder,
    _optimise_for_cpu,
    _quiet_worker,
    extract_split,  # noqa: E402
)
from captioning.features.store import FeatureStore  # noqa: E402
from captioning.models.encoders import ENCODERS, build_encoder  # noqa: E402
from captioning.train.device import set_cpu_threads  # noqa: E402


def timed(images: Path, ids: list[int], out: Path, encoder: str, weights: str, batch: int, optimise: bool) -> float:
    start = time.perf_counter()
    extract_split(images, ids, out, encoder, weights, batch, "cpu", optimise=optimise)
    return len(ids) / (time.perf_counter() - start)


def encoder_gflops(name: str, weights: str) -> float:
    spec, encoder = build_encoder(name, weights)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        encoder(torch.zeros(1, 3, spec.input_size, spec.input_size))
    return counter.get_total_flops() / 1e9


def decode_only(images: Path, ids: list[int], name: str, weights: str, batch: int) -> float:
    spec, _ = build_encoder(name, weights)
    loader = DataLoader(ImageFolder(images, ids, spec), batch_size=batch, num_workers=1,
                        worker_init_fn=_quiet_worker)
    start = time.perf_counter()
    for _ in loader:
        pass
    return len(ids) / (time.perf_counter() - start)


def cnn_only(n_images: int, name: str, weights: str, batch: int) -> float:
    spec, encoder = build_encoder(name, weights)
    encoder = _optimise_for_cpu(encoder.to(memory_format=torch.channels_last), spec, batch)
    x = torch.randn(batch, 3, spec.input_size, spec.input_size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        encoder(x)
        start = time.perf_counter()
        for _ in range(max(1, n_images // batch)):
            encoder(x)
    return max(1, n_images // batch) * batch / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--encoder", default="efficientnet_lite0", choices=sorted(ENCODERS))
    ap.add_argument("--weights", default="imagenet", choices=["imagenet", "none"])
    args = ap.parse_args()
    set_cpu_threads()
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
        timed(links, ids[:32], tmp / "warm", args.encoder, args.weights, 16, True)
        eager = timed(links, ids, tmp / "eager", args.encoder, args.weights, 64, False)
        fast = timed(links, ids, tmp / "fast", args.encoder, args.weights, 16, True)
        decoding = decode_only(links, ids, args.encoder, args.weights, 16)
        a, b = FeatureStore(tmp / "eager"), FeatureStore(tmp / "fast")
        diff = float(np.abs(np.asarray(a.pooled, np.float32) - np.asarray(b.pooled, np.float32)).max())
    print(f"\n{args.encoder}, {len(ids)} images of 224 px, CPU, JPEG decoding included")
    print("| way | images/s |\n|---|---|")
    print(f"| eager, batch 64 | {eager:.1f} |\n| traced + frozen, batch 16 (the stage) | {fast:.1f} |")
    print(f"ratio: {fast / eager:.2f}x; largest pooled-feature difference {diff:.4f} (float16 storage)")
    cnn = cnn_only(len(ids), args.encoder, args.weights, 16)
    rate, flops = matmul_gflops(), encoder_gflops(args.encoder, args.weights)
    floor = rate / flops
    print("\n| what | images/s |\n|---|---|")
    print(f"| FLOPs floor: {rate:.0f} GFLOP/s float32 matmul / {flops:.2f} GFLOP per image | {floor:.1f} |")
    print(f"| the stage (decode + CNN, overlapped) | {fast:.1f} ({fast / floor:.0%} of the floor) |")
    print(f"| CNN only, traced, batch 16 | {cnn:.1f} ({cnn / floor:.0%} of the floor) |")
    print(f"| JPEG decode + preprocess only, 1 worker | {decoding:.1f} |")
    print(f"decoding {'keeps' if decoding > cnn else 'does not keep'} the CNN fed "
          f"(decode {decoding:.0f} images/s against CNN {cnn:.0f} images/s; they share 2 cores)")


if __name__ == "__main__":
    main()
