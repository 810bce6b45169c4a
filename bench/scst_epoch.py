"""Self-critical (SCST) epochs: three samplers, each at 16 images per step (the attention recipe's) and at 64
(the adopted recipe's).

One SCST step samples `scst_samples` (5) captions per image with the decoder, scores each with CIDEr-D
against the image's training references, and backpropagates the policy gradient through the sampling.
The samplers: the pipeline's one pass with words drawn by inverting the cumulative distribution; the same
with torch.multinomial (the earlier way: it draws an exponential per word of the vocabulary); and two
passes (captions drawn without a graph, then their log-probabilities read in one teacher-forced pass).
On a CPU the recurrent step's products are small (16 images x 5 samples = 80 rows), so the per-step
overhead of PyTorch's operators, not arithmetic, sets much of the time; more images per step share it.

The data is Flickr8k-shaped: the real tokenized training references of ../shared/data/flickr8k (6,000
images, 5 captions each) for the reward, random features shaped like EfficientNet-Lite2's (1,280-d pooled,
9x9 grid), vocabulary 2,533, hidden 512. The decoder is untrained, with the bias of <end> set so a
sampled caption ends after about 11 tokens, as a trained model's do. Each way times the same images and
reports seconds per epoch (6,000 images) and its parts: sampling, reward, backward and update.

python bench/scst_epoch.py [--decoder gru_init] [--images 640] [--batches 16,64]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

from captioning.models.decoders import DECODERS, DecoderConfig, ImageFeatures  # noqa: E402
from captioning.models.decoders.base import forbid_special_tokens  # noqa: E402
from captioning.text.tokenizer import tokenize  # noqa: E402
from captioning.text.vocabulary import SPECIALS, Vocabulary  # noqa: E402
from captioning.train.device import autocast_context, cpu_has_native_bf16, set_cpu_threads  # noqa: E402
from captioning.train.scst import draw_words, leave_one_out_advantage, reward_references, sample_captions, words_of  # noqa: E402

FLICKR = Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k" / "Flickr8k_text"
VOCAB, CHANNELS, GRID, SAMPLES, EPOCH_IMAGES, MEAN_TOKENS = 2533, 1280, 81, 5, 6000, 11


def flickr_references() -> tuple[dict[int, list[list[str]]], list[str]]:
    """Tokenized training references by image row, and the words for a vocabulary of VOCAB."""
    train = set((FLICKR / "Flickr_8k.trainImages.txt").read_text().split())
    rows: dict[str, int] = {}
    refs: dict[int, list[list[str]]] = {}
    counts: dict[str, int] = {}
    for line in (FLICKR / "Flickr8k.token.txt").read_text().splitlines():
        name, _, caption = line.partition("\t")
        name = name.split("#")[0]
        if name in train:
            words = tokenize(caption)
            refs.setdefault(rows.setdefault(name, len(rows)), []).append(words)
            for w in words:
                counts[w] = counts.get(w, 0) + 1
    words = sorted(counts, key=counts.get, reverse=True)[:VOCAB - len(SPECIALS)]
    return refs, words


def make_decoder(name: str, vocab: Vocabulary) -> torch.nn.Module:
    decoder = DECODERS[name](DecoderConfig(len(vocab.words), CHANNELS, CHANNELS, 256, 512, 1, 0.5))
    with torch.no_grad():       # p(<end>) about 1/MEAN_TOKENS per step: captions as long as a trained model's
        decoder.out.weight[vocab.end_id].zero_()
        decoder.out.bias[vocab.end_id] = math.log(len(vocab.words) / (MEAN_TOKENS - 1))
    return decoder


def sample_multinomial(decoder, feats, samples, start_id, end_id, max_length):
    """The earlier sampler: the pipeline's, but each word drawn with torch.multinomial."""
    return sample_captions(decoder, feats, samples, start_id, end_id, max_length,
                           draw=lambda probs: torch.multinomial(probs, 1).squeeze(1))


def sample_two_pass(decoder, feats, samples, start_id, end_id, max_length):
    """Draw without a graph, then read the drawn captions' log-probabilities in one teacher-forced pass."""
    n = feats.pooled.shape[0] * samples
    index = torch.arange(feats.pooled.shape[0]).repeat_interleave(samples)
    decoder.eval()
    with torch.no_grad():
        state = decoder.select(decoder.init_state(feats), index)
        token = torch.full((n,), start_id, dtype=torch.long)
        alive, out = torch.ones(n, dtype=torch.bool), []
        for _ in range(max_length + 1):
            logits, state, _ = decoder.step(token, state)
            token = torch.where(alive, draw_words(torch.softmax(forbid_special_tokens(logits.float()), -1)), 0)
            out.append(token)
            alive = alive & (token != end_id)
            if not alive.any():
                break
    tokens = torch.stack(out, dim=1)
    inputs = torch.cat([torch.full((n, 1), start_id), tokens[:, :-1]], dim=1)
    inputs = inputs.masked_fill(inputs == end_id, 0)
    feats = ImageFeatures(feats.pooled, feats.grid, index) if decoder.shares_image_work else feats.select(index)
    logp = torch.log_softmax(forbid_special_tokens(decoder(feats, inputs).float()), dim=-1)
    picked = logp.gather(2, tokens.unsqueeze(2)).squeeze(2)
    decoder.train()
    return tokens, (picked * (tokens != 0)).sum(dim=1)


WAYS = {"one pass, torch.multinomial": sample_multinomial, "one pass, inverse CDF (the pipeline's)": sample_captions,
        "two passes": sample_two_pass}


def time_way(decoder, optimizer, grid, reward, vocab, sampler, batch: int, images: int, bf16: bool):
    """Seconds of each part over `images` images in steps of `batch`, after one warm-up step."""
    parts = dict.fromkeys(["sampling", "reward", "backward + update"], 0.0)
    order = np.random.default_rng(0).permutation(len(grid))
    for s, start in enumerate(range(0, images + batch, batch)):
        idx = order[start:start + batch]
        feats = ImageFeatures(grid[idx].mean(1).float(), grid[idx].float())
        t0 = time.perf_counter()
        with autocast_context(torch.device("cpu"), torch.bfloat16 if bf16 else None):
            tokens, logprob = sampler(decoder, feats, SAMPLES, vocab.start_id, vocab.end_id, 20)
        t1 = time.perf_counter()
        captions = words_of(tokens, vocab, mark_end=True)
        rewards = torch.tensor([reward.score(int(idx[i // SAMPLES]), c) for i, c in enumerate(captions)])
        advantage = leave_one_out_advantage(rewards.view(-1, SAMPLES)).view(-1)
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        (-(advantage * logprob).sum() / len(captions)).backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 5.0)
        optimizer.step()
        t3 = time.perf_counter()
        if s:                                        # step 0 is the warm-up
            for name, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
                parts[name] += dt
    return {name: seconds * EPOCH_IMAGES / images for name, seconds in parts.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--decoder", default="gru_init")
    ap.add_argument("--images", type=int, default=640, help="images timed per way (after a warm-up step)")
    ap.add_argument("--batches", default="16,64", help="images per SCST step, the first is the baseline")
    args = ap.parse_args()
    set_cpu_threads()
    torch.manual_seed(0)
    refs, words = flickr_references()
    vocab = Vocabulary(SPECIALS + tuple(words), 5, 20)
    reward = reward_references(refs)
    grid = torch.randn(len(refs), GRID, CHANNELS).half()
    bf16 = cpu_has_native_bf16()
    print(describe())
    print(f"SCST on {args.decoder}, {'bf16 autocast' if bf16 else 'float32'}; {len(refs)} images, "
          f"{SAMPLES} samples each; seconds per epoch of {EPOCH_IMAGES} images")
    print("\n| way | images per step | sampling | reward | backward + update | s/epoch |\n|---|---|---|---|---|---|")
    totals = []
    for batch in (int(b) for b in args.batches.split(",")):
        for way, sampler in WAYS.items():
            torch.manual_seed(0)
            decoder = make_decoder(args.decoder, vocab)
            decoder.train()
            optimizer = torch.optim.Adam(decoder.parameters(), 2e-4)
            parts = time_way(decoder, optimizer, grid, reward, vocab, sampler, batch, args.images, bf16)
            totals.append((f"{way}, {batch} images per step", sum(parts.values())))
            cells = " | ".join(f"{v:.1f}" for v in [*parts.values(), totals[-1][1]])
            print(f"| {way} | {batch} | {cells} |")
    base_way, base = totals[0]
    for way, seconds in totals[1:]:
        print(f"ratio: {way} is {base / seconds:.2f}x faster per SCST epoch than {base_way}")


if __name__ == "__main__":
    main()
