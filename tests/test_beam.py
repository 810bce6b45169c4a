"""Batched beam search against plain one-image-at-a-time searches (the same beam searched on to max_length,
and a brute-force search over every caption), and the tokens no caption may contain."""
import itertools
import math

import pytest
import torch

from captioning.decode.beam import beam_search
from captioning.models.decoders import DECODERS, Decoder, DecoderConfig, ImageFeatures
from captioning.models.decoders.base import forbid_special_tokens
from captioning.text.vocabulary import Vocabulary

PAD, START, END, UNK = Vocabulary.pad_id, Vocabulary.start_id, Vocabulary.end_id, Vocabulary.unk_id
NOT_WORDS = {PAD, START, UNK}      # never in a caption; <end> only ends one


def caption_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities [V] over what a caption may contain next (<end> and words); -inf elsewhere."""
    allowed = [w for w in range(logits.shape[-1]) if w not in NOT_WORDS]
    logp = torch.full((logits.shape[-1],), float("-inf"))
    logp[allowed] = torch.log_softmax(logits.reshape(-1)[allowed].float(), -1)
    return logp


def reference_beam(decoder, feats, k, max_length, length_penalty=0.0):
    """One image, plain Python lists, never stopping early: keep the k best live expansions for max_length
    steps; <end> moves a beam to finished, scored log-probability / length**length_penalty (<end> counted)."""
    live = [(0.0, [], decoder.init_state(feats))]
    finished = []
    for t in range(max_length):
        candidates = []
        for score, seq, state in live:
            logits, new_state, _ = decoder.step(torch.tensor([seq[-1] if seq else START]), state)
            logp = caption_log_probs(logits)
            candidates += [(score + float(logp[w]), seq + [w], new_state)
                           for w in range(len(logp)) if w not in NOT_WORDS]
        candidates.sort(key=lambda c: -c[0])
        live = []
        for score, seq, state in candidates[:k]:
            if seq[-1] == END:
                finished.append((score / (t + 1) ** length_penalty, seq[:-1]))
            else:
                live.append((score, seq, state))
        if not live:
            break
    if not finished:
        finished = [max(((s, q) for s, q, _ in live), key=lambda x: x[0])]
    return max(finished, key=lambda x: x[0])[1]


class RandomTreeDecoder(Decoder):
    """A fixed random stepping model: every image and every prefix gets its own seeded next-token logits
    (a prefix is numbered 1, then *V + token per token, so numbers differ across lengths too). It never
    proposes <pad>, <start> or <unk>, so the searches below differ only in how they search."""

    def __init__(self, vocab_size: int, max_length: int, n_images: int, seed: int, spread: float = 2.0):
        super().__init__(DecoderConfig(vocab_size, pooled_dim=1))
        g = torch.Generator().manual_seed(seed)
        self.table = spread * torch.randn(n_images, vocab_size ** max_length, vocab_size, generator=g)
        self.table[:, :, sorted(NOT_WORDS)] = float("-inf")

    def init_state(self, features):
        image = features.pooled[:, 0].long()
        return {"image": image, "prefix": torch.zeros_like(image)}

    def step(self, tokens, state):
        prefix = torch.where(state["prefix"] == 0, 1, state["prefix"] * self.config.vocab_size + tokens)
        return self.table[state["image"], prefix], {"image": state["image"], "prefix": prefix}, None


def image_ids(n: int) -> ImageFeatures:
    return ImageFeatures(torch.arange(n, dtype=torch.float32).unsqueeze(1))


def exhaustive_best(decoder, image: int, max_length: int, length_penalty: float) -> tuple[float, list[int]]:
    """The best finished caption by brute force: every word sequence shorter than max_length, then <end>."""
    words = [w for w in range(decoder.config.vocab_size) if w not in NOT_WORDS | {END}]
    best = (float("-inf"), [])
    for n in range(max_length):
        for seq in itertools.product(words, repeat=n):
            state, token, logp = decoder.init_state(ImageFeatures(torch.tensor([[float(image)]]))), START, 0.0
            for w in (*seq, END):
                logits, state, _ = decoder.step(torch.tensor([token]), state)
                logp, token = logp + float(caption_log_probs(logits)[w]), w
            best = max(best, (logp / (n + 1) ** length_penalty, list(seq)), key=lambda x: x[0])
    return best


@pytest.mark.parametrize("length_penalty", [0.0, 0.5, 1.0, 2.0])
def test_a_beam_wide_enough_finds_the_best_caption_of_all(length_penalty):
    vocab_size, max_length, n_images = 8, 4, 6           # <end> and 4 words: 85 captions per image
    decoder = RandomTreeDecoder(vocab_size, max_length, n_images, seed=0)
    wide = 5 * 4 ** (max_length - 1)                     # every expansion of every prefix fits
    hyps = beam_search(decoder, image_ids(n_images), START, END, wide, max_length, length_penalty)
    for image, hyp in enumerate(hyps):
        score, tokens = exhaustive_best(decoder, image, max_length, length_penalty)
        assert (hyp.tokens, hyp.score) == (tokens, pytest.approx(score, abs=1e-5))


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
@pytest.mark.parametrize("k", [2, 3])
def test_a_narrow_beam_stops_only_when_searching_on_cannot_find_better(k, length_penalty):
    """Stopping before max_length is an economy, never a different caption: the result is the one the same
    beam finds when it searches every step to max_length."""
    max_length, n_images = 5, 24
    decoder = RandomTreeDecoder(8, max_length, n_images, seed=1)
    hyps = beam_search(decoder, image_ids(n_images), START, END, k, max_length, length_penalty)
    searched_on = [reference_beam(decoder, image_ids(n_images).select(torch.tensor([i])), k, max_length,
                                  length_penalty) for i in range(n_images)]
    assert [h.tokens for h in hyps] == searched_on


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
@pytest.mark.parametrize(("k", "length_penalty"), [(1, 0.0), (3, 0.0), (3, 1.0)])
def test_batched_beam_equals_one_image_at_a_time(name, k, length_penalty):
    decoder = make_decoder(name)
    feats = features()
    batched = beam_search(decoder, feats, START, END, beam_size=k, max_length=8, length_penalty=length_penalty)
    with torch.inference_mode():
        for i, hyp in enumerate(batched):
            assert hyp.tokens == reference_beam(decoder, feats.select(torch.tensor([i])), k, 8, length_penalty)


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
            tokens = forbid_special_tokens(logits).argmax(-1)
            for i, w in enumerate(tokens.tolist()):
                if not done[i]:
                    done[i] = w == END
                    if not done[i]:
                        seqs[i].append(w)
    assert [h.tokens for h in hyps] == seqs


@pytest.mark.parametrize("beam_size", [1, 3])
def test_captions_never_contain_pad_start_or_unk_even_when_the_decoder_prefers_them(beam_size):
    decoder = make_decoder("show_tell")
    with torch.no_grad():
        decoder.out.bias[sorted(NOT_WORDS)] += 100.0    # each far likelier than any word, at every step
    hyps = beam_search(decoder, features(), START, END, beam_size=beam_size, max_length=8)
    assert [sorted(NOT_WORDS & set(h.tokens)) for h in hyps] == [[]] * len(hyps)
    assert all(math.isfinite(h.score) for h in hyps)


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
