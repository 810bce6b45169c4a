"""Soft-attention training steps: a plain tutorial-style loop against the project's `soft_attention` decoder.

Both train on Flickr8k-shaped data: the real caption lengths of ../shared/data/flickr8k (30,000
training captions, 6,000 images), random features shaped like EfficientNet-Lite2's 9x9x1280 grid,
vocabulary 2,533, batch 64, Adam, clip 5. The plain loop is the well-known tutorial's: an LSTMCell
stepped over the raw 1280-channel grid, the image-side attention projection computed per caption,
random caption batches. The project's: image-grouped batches, the grid projected once per image,
the batch shrinking as captions end, the word and output products over all steps at once, the
attention's scores and context as fused kernels (models/decoders/fused_attention.py), the three products
that read h as one with the recurrent weights' gradients formed once after all steps
(models/decoders/step_weights.py), and (train.precision: auto) bfloat16 matrix products on CPUs that have them natively.
Each way times the same number of steps and reports seconds per epoch (s/step x the epoch's batches), and
its share of the floor: the matrix products its steps run (counted by torch.utils.flop_counter, forward
and backward) at this machine's rate for one large product in the same precision.

python bench/attention_training.py [--steps 30] [--grid 81]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, matmul_gflops  # noqa: E402

from captioning.models.decoders import DecoderConfig, ImageFeatures  # noqa: E402
from captioning.models.decoders.attention_lstm import SoftAttentionDecoder  # noqa: E402
from captioning.models.decoders.top_down import TopDownDecoder  # noqa: E402
from captioning.text.tokenizer import tokenize  # noqa: E402
from captioning.train.captions import CaptionPairs, epoch_batches, image_grouped_batches  # noqa: E402
from captioning.train.device import cpu_has_native_bf16, set_cpu_threads  # noqa: E402

FLICKR = Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k" / "Flickr8k_text"
VOCAB, CHANNELS, BATCH = 2533, 1280, 64


class PlainSoftAttention(nn.Module):
    """The tutorial's decoder: attention over the raw grid, LSTMCell input = word + 1280-d context."""

    def __init__(self, channels: int, vocab: int, embed: int = 256, hidden: int = 512):
        super().__init__()
        self.image_attn, self.hidden_attn = nn.Linear(channels, hidden), nn.Linear(hidden, hidden)
        self.score, self.gate = nn.Linear(hidden, 1), nn.Linear(hidden, channels)
        self.init_h, self.init_c = nn.Linear(channels, hidden), nn.Linear(channels, hidden)
        self.embed, self.cell = nn.Embedding(vocab, embed), nn.LSTMCell(embed + channels, hidden)
        self.dropout, self.out = nn.Dropout(0.5), nn.Linear(hidden, vocab)

    def forward(self, grid: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        keys, mean = self.image_attn(grid), grid.mean(1)
        h, c = torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))
        words = self.dropout(self.embed(inputs))
        logits, coverage = [], 0.0
        for t in range(inputs.shape[1]):
            alpha = torch.softmax(self.score(torch.relu(keys + self.hidden_attn(h).unsqueeze(1))).squeeze(2), 1)
            context = torch.sigmoid(self.gate(h)) * torch.bmm(alpha.unsqueeze(1), grid).squeeze(1)
            h, c = self.cell(torch.cat([words[:, t], context], 1), (h, c))
            logits.append(self.out(self.dropout(h)))
            coverage = coverage + alpha * (inputs[:, t] != 0).unsqueeze(1)
        self.aux = ((1 - coverage) ** 2).mean()
        return torch.stack(logits, 1)


def flickr_pairs() -> CaptionPairs:
    """Real caption lengths (<start> words <end>, at most 22 tokens) of the Flickr8k training captions."""
    train = set((FLICKR / "Flickr_8k.trainImages.txt").read_text().split())
    images, lengths = {}, []
    rows = []
    for line in (FLICKR / "Flickr8k.token.txt").read_text().splitlines():
        name, _, caption = line.partition("\t")
        name = name.split("#")[0]
        if name in train:
            rows.append(images.setdefault(name, len(images)))
            lengths.append(min(len(tokenize(caption)), 20) + 2)
    lengths = np.asarray(lengths)
    rng = np.random.default_rng(0)
    tokens = np.zeros((len(lengths), lengths.max()), dtype=np.int64)
    for i, n in enumerate(lengths):
        tokens[i, :n] = np.r_[1, rng.integers(4, VOCAB, n - 2), 2]
    return CaptionPairs(np.asarray(rows), tokens, lengths)


def time_steps(train_step, batches, steps: int) -> tuple[float, float]:
    """Seconds per step, then the matrix-product GFLOP per step (forward and backward) on the same batches."""
    train_step(batches[0])                                   # warm-up
    t = time.perf_counter()
    for b in batches[1:steps + 1]:
        train_step(b)
    seconds = (time.perf_counter() - t) / steps
    with FlopCounterMode(display=False) as counter:
        for b in batches[1:steps + 1]:
            train_step(b)
    return seconds, counter.get_total_flops() / steps / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--grid", type=int, default=81, help="grid cells (81 = Lite2's 9x9, 49 = Lite0's 7x7)")
    args = ap.parse_args()
    set_cpu_threads()
    torch.manual_seed(0)
    pairs = flickr_pairs()
    n_images = int(pairs.rows.max()) + 1
    grid = torch.randn(n_images, args.grid, CHANNELS).half()
    print(describe())
    print(f"{len(pairs)} captions of {n_images} images, grid {args.grid}x{CHANNELS}, batch {BATCH}")
    ce = nn.CrossEntropyLoss(ignore_index=0)

    plain = PlainSoftAttention(CHANNELS, VOCAB)
    plain_opt = torch.optim.Adam(plain.parameters(), 4e-4)

    def plain_step(idx):
        length = int(pairs.lengths[idx].max())
        tokens = torch.from_numpy(pairs.tokens[idx, :length])
        logits = plain(grid[pairs.rows[idx]].float(), tokens[:, :-1])
        loss = ce(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1)) + plain.aux
        plain_opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(plain.parameters(), 5.0)
        plain_opt.step()

    config = DecoderConfig(VOCAB, CHANNELS, CHANNELS, 512, 512, 1, 0.5)      # the Flickr8k recipe's sizes
    decoders = {"soft_attention": SoftAttentionDecoder(config), "top_down": TopDownDecoder(config)}
    optimisers = {name: torch.optim.Adam(d.parameters(), 4e-4) for name, d in decoders.items()}

    def our_step(idx, bf16=False, name="soft_attention"):
        ours, ours_opt = decoders[name], optimisers[name]
        length = int(pairs.lengths[idx].max())
        tokens = torch.from_numpy(pairs.tokens[idx, :length])
        images, index = np.unique(pairs.rows[idx], return_inverse=True)
        feats = ImageFeatures(grid[images, 0].float(), grid[images].float(), torch.from_numpy(index.reshape(-1)))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = ours(feats, tokens[:, :-1])
            loss = ce(logits.float().reshape(-1, VOCAB), tokens[:, 1:].reshape(-1)) + ours.auxiliary_loss()
        ours_opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(ours.parameters(), 5.0)
        ours_opt.step()

    rng = np.random.default_rng(0)
    plain_batches = [rng.choice(len(pairs), BATCH, replace=False) for _ in range(args.steps + 1)]
    sorted_batches = epoch_batches(pairs, BATCH, 0, 0)
    grouped = image_grouped_batches(pairs, BATCH, 0, 0)
    fp32, bf16 = torch.float32, cpu_has_native_bf16()
    ours = torch.bfloat16 if bf16 else fp32
    rows = [("plain loop, random batches", plain_step, plain_batches, len(sorted_batches), fp32),
            ("plain loop, length-bucketed batches", plain_step, sorted_batches, len(sorted_batches), fp32),
            ("soft_attention decoder, image-grouped batches, fp32", our_step, grouped, len(grouped), fp32)]
    if bf16:
        rows.append(("soft_attention decoder, image-grouped batches, bf16 autocast",
                     lambda idx: our_step(idx, bf16=True), grouped, len(grouped), ours))
    rows.append((f"top_down decoder, image-grouped batches, {'bf16 autocast' if bf16 else 'fp32'}",
                 lambda idx: our_step(idx, bf16=bf16, name="top_down"), grouped, len(grouped), ours))
    rates = {dtype: matmul_gflops(dtype) for dtype in {fp32, ours}}
    print("matrix-product floor: " + ", ".join(f"{str(d).split('.')[1]} {r:.0f} GFLOP/s" for d, r in rates.items()))
    print("\n| way | s/step | batches/epoch | s/epoch | GFLOP/step | floor s/epoch | share of the floor |"
          "\n|---|---|---|---|---|---|---|")
    per_epoch = {}
    for name, fn, batches, n, dtype in rows:
        seconds, gflop = time_steps(fn, batches, args.steps)
        per_epoch[name], floor = seconds * n, gflop * n / rates[dtype]
        print(f"| {name} | {seconds:.3f} | {n} | {seconds * n:.0f} | {gflop:.1f} | {floor:.0f} | "
              f"{floor / (seconds * n):.0%} |")
    base, bucketed, ours_s = per_epoch[rows[0][0]], per_epoch[rows[1][0]], per_epoch[rows[-2][0]]
    print(f"ratio: top_down costs {per_epoch[rows[-1][0]] / ours_s:.2f}x the soft_attention decoder's time per epoch")
    print(f"ratio: the project's way ({rows[-2][0]}) is {base / ours_s:.1f}x faster per epoch than the plain loop, "
          f"{bucketed / ours_s:.2f}x faster than the plain loop with length buckets")
    print(f"ratio: fp32 against fp32, the project's way is {bucketed / per_epoch[rows[2][0]]:.2f}x the plain loop "
          "with length buckets")


if __name__ == "__main__":
    main()
