"""Batched beam search against a plain one-image-at-a-time beam search with the same rules."""
import math

import pytest
import torch

from captioning.decode.beam import beam_search
from captioning.models.decoders import DECODERS, DecoderConfig, ImageFeatures

START, END = 1, 2


def reference_beam(decoder, feats, k, max_length):
    """One image, plain Python lists: keep the k best live expansions; <end> moves a beam to finished."""
    state = decoder.init_state(feats)
    live = [(0.0, [], state)]
    finished = []
    for _ in range(max_length):
        candidates = []
        for score, seq, st in live:
            token = torch.tensor([seq[-1] if seq else START])
            logits, new_state, _ = decoder.step(token, st)
            logp = torch.log_softmax(logits.float(), -1)[0]
            for w in range(logp.shape[0]):
                candidates.append((score + float(logp[w]), seq + [w], new_state))
        candidates.sort(key=lambda c: -c[0])
        top = candidates[:k]
        live = []
        for score, seq, st in top:
            if seq[-1] == END:
                finished.append((score, seq[:-1]))
            else:
                live.append((score, seq, st))
        if len(finished) >= k or not live:
            break
    if not finished:
        finished = [max(((s, q) for s, q, _ in live), key=lambda x: x[0])]
    return max(finished, key=lambda x: x[0])[1]


def make_decoder(name, vocab_size=12, sharpen=4.0):
    torch.manual_seed(0)
    config = DecoderConfig(vocab_size=vocab_size, pooled_dim=16, grid_channels=8, embed_dim=16, hidden_dim=24,
                           dropout=0.0)
    decoder = DECODERS[name](config).eval()
    with torch.no_grad():  # peaky distributions, so beams end at different steps
        for p in decoder.parameters():
            p.mul_(sharpen)
    return decoder


def features(n=6):
    g = torch.Generator().manual_seed(1)
    return ImageFeatures(torch.randn(n, 16, generator=g), torch.randn(n, 4, 8, generator=g))


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("k", [1, 3])
def test_batched_beam_equals_one_image_at_a_time(name, k):
    decoder = make_decoder(name)
    feats = features()
    batched = beam_search(decoder, feats, START, END, beam_size=k, max_length=8)
    with torch.inference_mode():
        for i, hyp in enumerate(batched):
            single = reference_beam(decoder, feats.select(torch.tensor([i])), k, 8)
            assert hyp.tokens == single


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_beam_one_is_greedy(name):
    decoder = make_decoder(name)
    feats = features()
    hyps = beam_search(decoder, feats, START, END, beam_size=1, max_length=8)
    with torch.inference_mode():
        state = decoder.init_state(feats)
        tokens = torch.full((6,), START)
        seqs, done = [[] for _ in range(6)], [False] * 6
        for _ in range(8):
            logits, state, _ = decoder.step(tokens, state)
            tokens = logits.argmax(-1)
            for i, w in enumerate(tokens.tolist()):
                if not done[i]:
                    done[i] = w == END
                    if not done[i]:
                        seqs[i].append(w)
    assert [h.tokens for h in hyps] == seqs


def test_always_returns_a_caption_when_no_beam_ends():
    decoder = make_decoder("show_tell")
    with torch.no_grad():
        decoder.out.bias[END] = -1e4   # <end> can never win
    hyps = beam_search(decoder, features(3), START, END, beam_size=3, max_length=5)
    assert all(len(h.tokens) == 5 and math.isfinite(h.score) for h in hyps)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_nan_features_still_give_one_caption_per_image(beam_size):
    decoder = make_decoder("show_tell")
    feats = features(4)
    feats.pooled[1] = float("nan")                      # one poisoned image among good ones
    hyps = beam_search(decoder, feats, START, END, beam_size=beam_size, max_length=5)
    assert len(hyps) == 4 and all(isinstance(h.tokens, list) for h in hyps)
