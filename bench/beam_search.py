"""Batched beam search against one-image-at-a-time beam search (the tutorial's way), same model.

python bench/beam_search.py [--images 500] [--beam 5] [--decoder show_tell]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

from captioning.decode.beam import beam_search  # noqa: E402
from captioning.models.decoders import DECODERS, DecoderConfig, ImageFeatures  # noqa: E402
from captioning.train.device import set_cpu_threads  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--decoder", default="show_tell", choices=sorted(DECODERS))
    ap.add_argument("--batch", type=int, default=100, help="images per batched call")
    args = ap.parse_args()
    set_cpu_threads()
    torch.manual_seed(0)
    # Realistic sizes: Flickr8k-like vocabulary, EfficientNet-Lite0 features (1280, 7x7 grid).
    config = DecoderConfig(vocab_size=2500, pooled_dim=1280, grid_channels=1280, embed_dim=256, hidden_dim=512,
                           dropout=0.0)
    decoder = DECODERS[args.decoder](config).eval()
    feats = ImageFeatures(torch.rand(args.images, 1280), torch.rand(args.images, 49, 1280))
    print(describe())

    t = time.perf_counter()
    batched = []
    for s in range(0, args.images, args.batch):
        batched += beam_search(decoder, feats.select(torch.arange(s, min(s + args.batch, args.images))), 1, 2,
                               args.beam, 20)
    t_batched = time.perf_counter() - t

    t = time.perf_counter()
    single = [beam_search(decoder, feats.select(torch.tensor([i])), 1, 2, args.beam, 20)[0] for i in range(args.images)]
    t_single = time.perf_counter() - t

    same = sum(a.tokens == b.tokens for a, b in zip(batched, single))
    print(f"\n{args.decoder}, beam {args.beam}, {args.images} images, max length 20")
    print("| way | seconds | captions/s |\n|---|---|---|")
    print(f"| one image at a time | {t_single:.1f} | {args.images / t_single:.1f} |")
    print(f"| batched ({args.batch} images x {args.beam} beams) | {t_batched:.1f} | {args.images / t_batched:.1f} |")
    print(f"ratio: batched is {t_single / t_batched:.1f}x faster; identical captions: {same}/{args.images}")


if __name__ == "__main__":
    main()
