"""The validation loss each cross-entropy epoch ends with: float32 against the training precision (bf16).

Flickr8k dev-shaped: the first 5,000 real Flickr8k caption lengths over 1,000 images, random features
shaped like EfficientNet-Lite2's 9x9x1280 grid, the recipe's `soft_attention` decoder (embeddings 512,
hidden 512, vocabulary 2,533), the cross-entropy phase's own `validation_loss`. Prints seconds per validation for each
way, their ratio and both losses (close: the products run in bf16, the softmax and sums in float32).

python bench/validation_loss.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from attention_training import CHANNELS, VOCAB, flickr_pairs  # noqa: E402
from machine import describe  # noqa: E402

from captioning.models.decoders import DecoderConfig, build_decoder  # noqa: E402
from captioning.params import TrainParams  # noqa: E402
from captioning.train.captions import CaptionPairs  # noqa: E402
from captioning.train.cross_entropy import validation_loss  # noqa: E402
from captioning.train.device import cpu_has_native_bf16, set_cpu_threads  # noqa: E402
from captioning.train.split_data import SplitData  # noqa: E402

DEV_CAPTIONS, DEV_IMAGES = 5000, 1000


def dev_split() -> SplitData:
    pairs = flickr_pairs()
    keep = np.flatnonzero(pairs.rows < DEV_IMAGES)[:DEV_CAPTIONS]
    dev = CaptionPairs(pairs.rows[keep], pairs.tokens[keep], pairs.lengths[keep])
    grid = np.random.default_rng(0).standard_normal((DEV_IMAGES, 81, CHANNELS), dtype=np.float32).astype(np.float16)
    return SplitData(grid.mean(1), grid, list(range(DEV_IMAGES)), dev, {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    set_cpu_threads()
    torch.manual_seed(0)
    print(describe())
    if not cpu_has_native_bf16():
        print("this CPU has no native bf16: train.precision auto trains in float32 here, nothing to compare")
        return
    data = dev_split()
    decoder = build_decoder("soft_attention", DecoderConfig(VOCAB, CHANNELS, CHANNELS, 512, 512, 1, 0.5))
    p, cpu = TrainParams(decoder="soft_attention"), torch.device("cpu")
    validation_loss(decoder, data, p, cpu, torch.bfloat16)                      # warm-up
    results = {}
    for name, dtype in (("float32", None), ("bf16 autocast", torch.bfloat16)):
        started = time.perf_counter()
        for _ in range(args.repeats):
            loss = validation_loss(decoder, data, p, cpu, dtype)
        results[name] = ((time.perf_counter() - started) / args.repeats, loss)
    print(f"{len(data.pairs)} captions of {DEV_IMAGES} images\n\n| way | s per validation | loss |\n|---|---|---|")
    for name, (seconds, loss) in results.items():
        print(f"| {name} | {seconds:.2f} | {loss:.5f} |")
    (f32, f32_loss), (bf16, bf16_loss) = results["float32"], results["bf16 autocast"]
    print(f"ratio: bf16 is {f32 / bf16:.2f}x faster; losses differ by {abs(f32_loss - bf16_loss):.5f}")


if __name__ == "__main__":
    main()
