"""Beam search, batched over images *and* beams in one tensor program; beam 1 is greedy decoding.

Semantics (the test's one-image-at-a-time reference, which never stops early, gives the same captions):
- <pad>, <start> and <unk> are never chosen (forbid_special_tokens, shared with every sampler);
- every step keeps the `beam_size` best expansions of the live beams;
- an expansion that emits <end> becomes a finished hypothesis (its slot is then dead);
- the best finished hypothesis wins, scored by log-probability / length**length_penalty (length counts <end>);
- an image is done when none of its live beams can still finish above its best finished hypothesis, or
  after `max_length` tokens: stopping early never changes the result of searching on to `max_length`;
  when no beam finished within `max_length`, the best unfinished beam is returned (never nothing).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from captioning.models.decoders import Decoder, ImageFeatures
from captioning.models.decoders.base import forbid_special_tokens


@dataclass
class Hypothesis:
    tokens: list[int]                      # words only, without <start>/<end>
    score: float                           # normalised log-probability
    attention: Optional[torch.Tensor]      # [len(tokens), L] or None


def _normalise(logp: float, length: int, length_penalty: float) -> float:
    return logp / (max(length, 1) ** length_penalty) if length_penalty else logp


def _best_reachable(scores: torch.Tensor, length: int, max_length: int, length_penalty: float) -> torch.Tensor:
    """Per image, an upper bound on the score any of its live beams ([images, k] log-probabilities, each
    `length` tokens long) can still finish with.

    A beam with log-probability s <= 0 finishes at some length L in [length + 1, max_length] with a
    log-probability s' <= s (every token costs), so with p = length_penalty >= 0 its score is
    s' / L**p <= s / L**p <= s / max_length**p: dividing a loss by a larger length shrinks it, so the
    best case is the longest caption (for p < 0 it would be the shortest, length + 1; both ends are taken,
    so the bound holds either way). s / L**p rises with s, so the best live beam bounds the image."""
    best = torch.nan_to_num(scores, nan=float("-inf")).max(dim=1).values
    if not length_penalty:
        return best
    return torch.maximum(best / (length + 1) ** length_penalty, best / max_length ** length_penalty)


@torch.inference_mode()
def beam_search(decoder: Decoder, features: ImageFeatures, start_id: int, end_id: int, beam_size: int = 1,
                max_length: int = 20, length_penalty: float = 0.0) -> list[Hypothesis]:
    n_images, k = features.pooled.shape[0], beam_size
    device = features.pooled.device
    state = decoder.init_state(features)
    state = decoder.select(state, torch.arange(n_images, device=device).repeat_interleave(k))
    scores = torch.full((n_images, k), float("-inf"), device=device)
    scores[:, 0] = 0.0                                    # all beams start identical: expand only one
    tokens = torch.full((n_images * k,), start_id, dtype=torch.long, device=device)
    seqs = torch.empty((n_images * k, 0), dtype=torch.long, device=device)
    alphas: Optional[torch.Tensor] = None
    active = torch.arange(n_images)                       # which image each live block of k rows belongs to
    finished: list[list[Hypothesis]] = [[] for _ in range(n_images)]

    for t in range(max_length):
        logits, state, alpha = decoder.step(tokens, state)
        logp = torch.log_softmax(forbid_special_tokens(logits.float()), dim=-1)
        vocab_size = logp.shape[1]
        n = len(active)
        top_scores, top_idx = (scores.view(-1, 1) + logp).view(n, k * vocab_size).topk(k, dim=1)
        words = top_idx % vocab_size
        rows = (torch.arange(n, device=device).unsqueeze(1) * k + top_idx // vocab_size).view(-1)
        seqs = torch.cat([seqs[rows], words.view(-1, 1)], dim=1)
        if alpha is not None:
            step_alpha = alpha.float()[rows].unsqueeze(1)
            alphas = step_alpha if alphas is None else torch.cat([alphas[rows], step_alpha], dim=1)
        state = decoder.select(state, rows)

        ended = (words == end_id) & torch.isfinite(top_scores)
        for i, j in ended.nonzero().tolist():
            row = i * k + j
            finished[int(active[i])].append(Hypothesis(
                seqs[row, :-1].tolist(), _normalise(float(top_scores[i, j]), t + 1, length_penalty),
                None if alphas is None else alphas[row, :-1].cpu()))
        scores = top_scores.masked_fill(ended, float("-inf"))
        tokens = words.view(-1)

        best_finished = torch.tensor([max((h.score for h in finished[int(a)]), default=float("-inf"))
                                      for a in active], dtype=torch.float64)     # as exact as the scores
        reachable = _best_reachable(scores.cpu().double(), t + 1, max_length, length_penalty)
        done = (best_finished >= reachable).to(device) | ~torch.isfinite(scores).any(dim=1)
        for i in done.nonzero().view(-1).tolist():        # every image leaves with a caption, even if all
            image = int(active[i])                         # its beams went non-finite (NaN logits)
            if not finished[image]:
                row = i * k + int(torch.nan_to_num(scores[i], nan=float("-inf")).argmax())
                finished[image].append(Hypothesis(seqs[row].tolist(), float("-inf"),
                                                  None if alphas is None else alphas[row].cpu()))
        if bool(done.all()):
            active = active[:0]
            break
        if bool(done.any()):                              # drop finished images: later steps get cheaper
            keep = (~done).nonzero().view(-1)
            keep_rows = (keep.unsqueeze(1) * k + torch.arange(k, device=device)).view(-1)
            active, scores = active[keep.cpu()], scores[keep]
            seqs, tokens = seqs[keep_rows], tokens[keep_rows]
            alphas = None if alphas is None else alphas[keep_rows]
            state = decoder.select(state, keep_rows)

    _close_unfinished(finished, active, scores, seqs, alphas, max_length, length_penalty)
    return [max(h, key=lambda x: x.score) for h in finished]


def _close_unfinished(finished: list[list[Hypothesis]], active: torch.Tensor, scores: torch.Tensor, seqs: torch.Tensor,
                      alphas: Optional[torch.Tensor], max_length: int, length_penalty: float) -> None:
    """Images that ran out of length with no finished beam get their best unfinished one."""
    k = scores.shape[1]
    for i, image in enumerate(active.tolist()):
        if finished[image]:
            continue
        j = int(scores[i].argmax())
        row = i * k + j
        finished[image].append(Hypothesis(seqs[row].tolist(),
                                          _normalise(float(scores[i, j]), max_length, length_penalty),
                                          None if alphas is None else alphas[row].cpu()))
