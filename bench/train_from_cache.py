"""Training from cached features (the pipeline's way) against recomputing the frozen CNN on every step
(the tutorial's way): same decoder, same captions, same batch size; seconds per epoch.

python bench/train_from_cache.py [--images 128] [--encoder efficientnet_lite0] [--decoder show_tell]
Images are the synthetic dataset's (generated into a temporary folder); the recompute way decodes
each JPEG and runs the encoder for every caption in the batch, as the tutorial's DataLoader does.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from captioning.data.coco import load_captions  # noqa: E402
from captioning.data.synthetic import generate_synthetic  # noqa: E402
from captioning.features.extract import extract_split  # noqa: E402
from captioning.features.store import FeatureStore  # noqa: E402
from captioning.models.decoders import DECODERS, DecoderConfig, ImageFeatures, build_decoder  # noqa: E402
from captioning.models.encoders import build_encoder  # noqa: E402
from captioning.text.vocabulary import build_vocabulary  # noqa: E402
from captioning.train.captions import build_pairs, epoch_batches  # noqa: E402
from captioning.train.device import set_cpu_threads  # noqa: E402


def step(decoder, optimizer, feats: ImageFeatures, tokens: torch.Tensor) -> None:
    logits = decoder(feats, tokens[:, :-1])
    loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), ignore_index=0)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--encoder", default="efficientnet_lite0")
    ap.add_argument("--decoder", default="show_tell", choices=sorted(DECODERS))
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    set_cpu_threads()
    print(describe())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_synthetic(tmp / "raw", args.images, 1, 224, seed=0)
        coco = load_captions(tmp / "raw" / "annotations" / "captions_train2017.json")
        paths = {im["id"]: tmp / "raw" / "train2017" / im["file_name"] for im in coco["images"]}
        images = tmp / "images"
        images.mkdir()
        for image_id, path in paths.items():
            (images / f"{image_id}.jpg").symlink_to(path)
        ids = sorted(paths)
        t = time.perf_counter()
        extract_split(images, ids, tmp / "features", args.encoder, "imagenet", 16, "cpu")
        t_extract = time.perf_counter() - t
        store = FeatureStore(tmp / "features")
        vocab, _ = build_vocabulary([a["caption"] for a in coco["annotations"]], 1, 20)
        pairs = build_pairs(coco, store.row_of, vocab)
        batches = epoch_batches(pairs, args.batch, 0, 0)
        spec, encoder = build_encoder(args.encoder, "imagenet")
        config = DecoderConfig(len(vocab), spec.pooled_dim, spec.pooled_dim, 256, 512, 1, 0.5)

        def epoch(recompute: bool) -> float:
            torch.manual_seed(0)
            decoder = build_decoder(args.decoder, config).train()
            optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-3)
            start = time.perf_counter()
            for idx in batches:
                length = int(pairs.lengths[idx].max())
                tokens = torch.from_numpy(pairs.tokens[idx, :length])
                rows = pairs.rows[idx]
                if recompute:
                    with torch.no_grad():
                        pixels = []
                        for r in rows:
                            with Image.open(images / f"{store.ids[r]}.jpg") as im:
                                pixels.append(spec.preprocess(im))
                        pooled, grid = encoder(torch.stack(pixels))
                    feats = ImageFeatures(pooled, grid if decoder.needs_grid else None)
                else:
                    feats = ImageFeatures(torch.from_numpy(np.asarray(store.pooled[rows], np.float32)),
                                          torch.from_numpy(np.asarray(store.grid[rows], np.float32))
                                          if decoder.needs_grid else None)
                step(decoder, optimizer, feats, tokens)
            return time.perf_counter() - start

        cached = epoch(False)
        recomputed = epoch(True)
    print(f"\n{args.decoder} on {args.encoder}, {len(pairs)} captions of {len(ids)} images, batch {args.batch}, CPU")
    print("| way | seconds per epoch |\n|---|---|")
    print(f"| recompute the frozen CNN every step (tutorial) | {recomputed:.1f} |")
    print(f"| cached features (this pipeline) | {cached:.2f} |")
    print(f"one-off feature extraction: {t_extract:.1f} s")
    print(f"ratio: {recomputed / cached:.1f}x faster per epoch")


if __name__ == "__main__":
    main()
