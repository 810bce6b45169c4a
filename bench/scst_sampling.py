"""Self-critical steps: the pipeline's sampler (a fixed batch, torch.multinomial) against a faster one
(ended captions leave the batch; words drawn by inverting the cumulative distribution), measured and
not adopted: it draws other random numbers, so the documented Flickr8k recipe would become another run.

A trained model is needed (an untrained one rarely samples <end>, so few captions would leave): give the
models/ folder and the features of a Flickr8k run (for example the README's Flickr8k recipe's outputs).
Each step samples 5 captions for each of 16 training images (the recipe's SCST batch) and
back-propagates the summed log-probabilities, in the training precision; both ways see the same images.

python bench/scst_sampling.py --model models --features data/features/train [--steps 20]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

from captioning.features.store import FeatureStore  # noqa: E402
from captioning.models.artifact import load_model  # noqa: E402
from captioning.models.decoders import ImageFeatures  # noqa: E402
from captioning.train.device import autocast_dtype, set_cpu_threads  # noqa: E402
from captioning.train.scst import sample_captions  # noqa: E402

IMAGES, SAMPLES = 16, 5


def draw(logp: torch.Tensor) -> torch.Tensor:
    """One word per row by inverting the cumulative distribution at one uniform draw (torch.multinomial
    draws an exponential per word); never a zero-probability word."""
    cdf = logp.float().exp().cumsum(dim=1)
    u = torch.rand(cdf.shape[0], 1) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.shape[1] - 1)


def sample_shrinking(decoder, feats: ImageFeatures, samples: int, start_id: int, end_id: int, max_length: int):
    """Ended captions leave the batch in a few large cuts (each cut costs a full-size gradient copy in backward)."""
    n = feats.pooled.shape[0] * samples
    index = torch.arange(feats.pooled.shape[0]).repeat_interleave(samples)
    state = decoder.select(decoder.init_state(feats), index)
    rows = torch.arange(n)                                  # the caption each state row belongs to
    token = torch.full((n,), start_id, dtype=torch.long)
    alive = torch.ones(n, dtype=torch.bool)
    logprob = torch.zeros(n)
    out = torch.zeros((n, max_length + 1), dtype=torch.long)
    steps = 0
    for t in range(max_length + 1):
        logits, state, _ = decoder.step(token, state)
        logp = torch.log_softmax(logits.float(), dim=-1)
        token = draw(logp.detach())
        live = alive[rows]
        logprob = logprob.index_add(0, rows, torch.where(live, logp.gather(1, token[:, None]).squeeze(1),
                                                         torch.zeros_like(live, dtype=logp.dtype)))
        token = torch.where(live, token, torch.zeros_like(token))
        out[rows, t] = token
        live = live & (token != end_id)
        alive[rows] = live
        steps = t + 1
        n_live = int(live.sum())
        if n_live == 0:
            break
        if n_live < 0.75 * len(rows):
            keep = live.nonzero().squeeze(1)
            rows, token, state = rows[keep], token[keep], decoder.select(state, keep)
    return out[:, :steps], logprob


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--features", type=Path, required=True, help="a features/train folder matching the model")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    set_cpu_threads()
    print(describe())
    model = load_model(args.model)
    decoder, vocab = model.decoder.train(), model.vocab
    store = FeatureStore(args.features)
    amp = autocast_dtype(torch.device("cpu"), "auto")
    rng = np.random.default_rng(0)
    batches = [np.sort(rng.choice(len(store.ids), IMAGES, replace=False)) for _ in range(args.steps + 1)]

    def run(sampler) -> tuple[float, float, float]:
        torch.manual_seed(0)
        seconds, words, steps = 0.0, [], []
        for b, rows in enumerate(batches):
            feats = ImageFeatures(torch.from_numpy(np.asarray(store.pooled[rows], dtype=np.float32)),
                                  torch.from_numpy(np.asarray(store.grid[rows], dtype=np.float32)))
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
                tokens, logprob = sampler(decoder, feats, SAMPLES, vocab.start_id, vocab.end_id, vocab.max_length)
            decoder.zero_grad(set_to_none=True)
            (-logprob.sum() / len(logprob)).backward()
            if b:                                      # the first step warms up
                seconds += time.perf_counter() - started
                ended = (tokens == vocab.end_id).float()
                words.append(float(torch.where(ended.any(1), ended.argmax(1), tokens.shape[1]).float().mean()))
                steps.append(tokens.shape[1])
        return seconds / args.steps, float(np.mean(words)), float(np.mean(steps))

    fixed, shrinking = run(sample_captions), run(sample_shrinking)
    print(f"{IMAGES} images x {SAMPLES} samples per step, {args.steps} steps, precision {amp or 'float32'}\n")
    print("| way | s/step (sample + backward) | mean words | decoding steps |\n|---|---|---|---|")
    print(f"| the pipeline: fixed batch, torch.multinomial | {fixed[0]:.3f} | {fixed[1]:.1f} | {fixed[2]:.1f} |")
    print(f"| not adopted: ended captions leave, inverse-CDF draws | {shrinking[0]:.3f} | {shrinking[1]:.1f} | {shrinking[2]:.1f} |")
    print(f"ratio: the faster sampler is {fixed[0] / shrinking[0]:.2f}x faster per SCST step")


if __name__ == "__main__":
    main()
