"""Train a decoder on a small learnable toy task; run as a script by the resume test (so it can be killed).

Usage: python tests/train_toy.py STATE_DIR OUT.safetensors [DECODER] [SLEEP_PER_STEP] [DROPOUT]
Also runs under `torchrun` (DDP on gloo); rank 0 writes OUT.safetensors and OUT.losses.json.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from captioning.models.decoders import DecoderConfig, build_decoder
from captioning.params import TrainParams
from captioning.text.vocabulary import build_vocabulary
from captioning.train import distributed
from captioning.train.captions import build_pairs
from captioning.train.loop import train_decoder
from captioning.train.split_data import SplitData

COLOURS = ["red", "blue", "green", "yellow"]


def toy_split(n_images: int, seed: int, vocab=None):
    """Image i's features encode a colour; its captions name it. Learnable only from the features."""
    rng = np.random.default_rng(seed)
    colour = rng.integers(0, len(COLOURS), n_images)
    pooled = rng.normal(0, 0.1, (n_images, 8)).astype(np.float16)
    pooled[np.arange(n_images), colour] += 2.0
    grid = np.repeat(pooled[:, None, :], 4, axis=1)
    ids = list(range(1000 * seed, 1000 * seed + n_images))
    anns = [{"id": 5 * i + j, "image_id": ids[i], "caption": f"{pre} {COLOURS[colour[i]]} shape"}
            for i in range(n_images) for j, pre in enumerate(["a", "one", "a small", "there is a", "a big"])]
    coco = {"images": [{"id": i, "file_name": f"{i}.jpg"} for i in ids], "annotations": anns}
    if vocab is None:
        vocab, _ = build_vocabulary([a["caption"] for a in anns], 1, 10)
    pairs = build_pairs(coco, {image_id: r for r, image_id in enumerate(ids)}, vocab)
    refs = {i: [a["caption"] for a in anns if a["image_id"] == i] for i in ids}
    return SplitData(pooled, grid, ids, pairs, refs), vocab


def train_toy(state_dir: Path, decoder_name: str = "show_tell", epochs: int = 3, sleep: float = 0.0,
              dropout: float = 0.1, **overrides):
    torch.manual_seed(0)
    train, vocab = toy_split(64, 1)
    val, _ = toy_split(16, 2, vocab)
    p = TrainParams(decoder=decoder_name, epochs=epochs, batch_size=16, lr=0.01, embed_dim=16, hidden_dim=32,
                    dropout=dropout, checkpoint_every=3, select="loss", lr_schedule="constant", **overrides)
    decoder = build_decoder(decoder_name, DecoderConfig(len(vocab), 8, 8, 16, 32, 1, dropout))
    if sleep:  # slows the steps so the test can kill the process mid-epoch
        original = decoder.forward
        decoder.forward = lambda *a, **k: (time.sleep(sleep), original(*a, **k))[1]
    result = train_decoder(decoder, train, val, vocab, p, 0, torch.device("cpu"), state_dir, {"run": "toy"})
    return decoder, result, vocab, val


def script_validation_by_rank(scores_by_rank: list[list[float]]) -> None:
    """Each rank's validation returns its own scores: ranks that disagree, as float noise could make them."""
    from captioning.train.cross_entropy import CrossEntropyPhase
    from captioning.train.driver import Validation
    mine, calls = scores_by_rank[distributed.rank_and_world()[0]], []

    def validate(self, epoch):
        calls.append(epoch)
        score = mine[len(calls) - 1]
        return Validation(score, {"val_loss": 1.0, "val_perplexity": 2.7, "val_bleu_4": 0.0, "val_cider": score})
    CrossEntropyPhase.validate = validate


if __name__ == "__main__":
    name = sys.argv[3] if len(sys.argv) > 3 else "show_tell"
    sleep = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    dropout = float(sys.argv[5]) if len(sys.argv) > 5 else 0.1
    precision = sys.argv[6] if len(sys.argv) > 6 else "auto"
    distributed.init("cpu")
    overrides = {}
    if "TOY_SCORES_BY_RANK" in os.environ:      # with patience 2
        script_validation_by_rank(json.loads(os.environ["TOY_SCORES_BY_RANK"]))
        overrides = {"patience": 2, "epochs": 6}
    decoder, result, _, _ = train_toy(Path(sys.argv[1]), name, sleep=sleep, dropout=dropout, precision=precision,
                                      **overrides)
    rank = distributed.rank_and_world()[0]
    Path(f"{sys.argv[2]}.rank{rank}.epochs").write_text(json.dumps([e["epoch"] for e in result.epoch_log]))
    if distributed.is_main():
        save_file({k: v.contiguous() for k, v in decoder.state_dict().items()}, sys.argv[2])
        losses = [row[3] for row in result.step_log if row[2] == "loss"]
        Path(sys.argv[2] + ".losses.json").write_text(json.dumps(losses))
    distributed.shutdown()
