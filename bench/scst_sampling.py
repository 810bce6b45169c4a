"""Self-critical steps: the earlier sampler (a fixed batch, torch.multinomial) against the pipeline's
(ended captions leave the batch; words drawn by inverting the cumulative distribution).

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


def sample_fixed_batch(decoder, feats: ImageFeatures, samples: int, start_id: int, end_id: int, max_length: int):
    """The earlier code: every row stays in the batch until all have ended (ended rows are fed padding)."""
    n = feats.pooled.shape[0] * samples
    index = torch.arange(feats.pooled.shape[0]).repeat_interleave(samples)
    state = decoder.select(decoder.init_state(feats), index)
    token = torch.full((n,), start_id, dtype=torch.long)
    alive = torch.ones(n, dtype=torch.bool)
    logprob = torch.zeros(n)
    out = []
    for _ in range(max_length + 1):
        logits, state, _ = decoder.step(token, state)
        logp = torch.log_softmax(logits.float(), dim=-1)
        token = torch.multinomial(logp.detach().exp(), 1).squeeze(1)
        logprob = logprob + torch.where(alive, logp.gather(1, token[:, None]).squeeze(1), torch.zeros_like(logprob))
        token = torch.where(alive, token, torch.zeros_like(token))
        out.append(token)
        alive = alive & (token != end_id)
        if not alive.any():
            break
    return torch.stack(out, dim=1), logprob


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

    fixed, shrinking = run(sample_fixed_batch), run(sample_captions)
    print(f"{IMAGES} images x {SAMPLES} samples per step, {args.steps} steps, precision {amp or 'float32'}\n")
    print("| way | s/step (sample + backward) | mean words | decoding steps |\n|---|---|---|---|")
    print(f"| fixed batch, torch.multinomial | {fixed[0]:.3f} | {fixed[1]:.1f} | {fixed[2]:.1f} |")
    print(f"| ended captions leave, inverse-CDF draws | {shrinking[0]:.3f} | {shrinking[1]:.1f} | {shrinking[2]:.1f} |")
    print(f"ratio: {fixed[0] / shrinking[0]:.2f}x faster per SCST step")


if __name__ == "__main__":
    main()
