"""Self-critical sequence training (Rennie et al. 2017) on CIDEr-D.

After cross-entropy training, the decoder samples `samples` captions per image, each is rewarded with
its CIDEr-D against the image's training references, and the policy gradient pushes up captions that
beat the baseline. The baseline is the mean reward of the image's other samples (Luo 2020, "A better
variant of self-critical sequence training"): no extra greedy decode per step, and lower variance.

The end of a caption counts as a word in the reward (END_WORD, appended to every reference and to every
sampled caption that ended): without it CIDEr-D cannot tell "a dog runs on the grass" from "a dog runs
on the", and SCST learns to stop mid-phrase ("bad endings", fixed the same way in self-critical.pytorch).
"""
from __future__ import annotations

import torch

from captioning.models.decoders import Decoder, ImageFeatures
from captioning.text.vocabulary import Vocabulary
from captioning.train.cider_reward import CiderD

END_WORD = "<eos>"


def reward_references(references: dict[int, list[list[str]]]) -> CiderD:
    """The CIDEr-D rewarder over tokenized training references, each ending with END_WORD."""
    return CiderD({key: [ref + [END_WORD] for ref in refs] for key, refs in references.items()})


def _draw(logp: torch.Tensor) -> torch.Tensor:
    """One word per row from log-probabilities [B, V], by inverting the cumulative distribution at a uniform
    draw: the distribution of torch.multinomial, at a tenth of its cost on CPU (it draws V exponentials per
    row; this, one uniform), which was a tenth of an SCST step."""
    cdf = logp.float().exp().cumsum(dim=1)
    u = torch.rand(cdf.shape[0], 1, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.shape[1] - 1)   # never a zero-probability word


def sample_captions(decoder: Decoder, feats: ImageFeatures, samples: int, start_id: int, end_id: int,
                    max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial samples, `samples` per image (image-major). Returns tokens [B*S, T] (0 after <end>)
    and the summed log-probability of each caption (with gradient), <end> included.

    Ended captions leave the batch (in a few large cuts, as the decoders' training forward does: each cut
    costs a full-size gradient copy in backward). With the cheaper word draws (_draw), an SCST step of the
    Flickr8k recipe takes 0.43 s against 0.55 s (bench/scst_sampling.py): the steps are mostly matrix
    products too small for fewer rows to make them much cheaper.
    """
    n = feats.pooled.shape[0] * samples
    device = feats.pooled.device
    index = torch.arange(feats.pooled.shape[0], device=device).repeat_interleave(samples)
    state = decoder.select(decoder.init_state(feats), index)      # per-image work once, then rows per sample
    rows = torch.arange(n, device=device)                          # the caption each state row belongs to
    token = torch.full((n,), start_id, dtype=torch.long, device=device)
    alive = torch.ones(n, dtype=torch.bool, device=device)
    logprob = torch.zeros(n, device=device)
    out = torch.zeros((n, max_length + 1), dtype=torch.long, device=device)
    steps = 0
    for t in range(max_length + 1):        # max_length words plus <end>
        logits, state, _ = decoder.step(token, state)
        logp = torch.log_softmax(logits.float(), dim=-1)
        token = _draw(logp.detach())
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


def words_of(tokens: torch.Tensor, vocab: Vocabulary, mark_end: bool = False) -> list[list[str]]:
    """Token rows -> word lists, stopping at <end> (kept as END_WORD with `mark_end`); unknown words stay
    '<unk>' (they match no reference)."""
    words = []
    for row in tokens.tolist():
        seq = []
        for t in row:
            if t == vocab.end_id and mark_end:
                seq.append(END_WORD)
            if t == vocab.end_id or t == vocab.pad_id:
                break
            seq.append(vocab.words[t])
        words.append(seq)
    return words


def scst_loss(decoder: Decoder, feats: ImageFeatures, keys: list[int], reward: CiderD, vocab: Vocabulary,
              samples: int, max_length: int) -> tuple[torch.Tensor, float]:
    """`reward` from reward_references. Summed policy-gradient loss over the batch's captions and their mean reward."""
    tokens, logprob = sample_captions(decoder, feats, samples, vocab.start_id, vocab.end_id, max_length)
    captions = words_of(tokens, vocab, mark_end=True)
    rewards = torch.tensor([reward.score(keys[i // samples], c) for i, c in enumerate(captions)],
                           dtype=torch.float32).view(-1, samples)
    baseline = (rewards.sum(dim=1, keepdim=True) - rewards) / max(samples - 1, 1)
    advantage = (rewards - baseline).view(-1).to(logprob.device)
    return -(advantage * logprob).sum(), float(rewards.mean())
