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


def sample_captions(decoder: Decoder, feats: ImageFeatures, samples: int, start_id: int, end_id: int,
                    max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial samples, `samples` per image (image-major). Returns tokens [B*S, T] (0 after <end>)
    and the summed log-probability of each caption (with gradient), <end> included."""
    n = feats.pooled.shape[0] * samples
    index = torch.arange(feats.pooled.shape[0], device=feats.pooled.device).repeat_interleave(samples)
    state = decoder.select(decoder.init_state(feats), index)      # per-image work once, then rows per sample
    token = torch.full((n,), start_id, dtype=torch.long, device=index.device)
    alive = torch.ones(n, dtype=torch.bool, device=index.device)
    logprob = torch.zeros(n, device=index.device)
    out = []
    for _ in range(max_length + 1):        # max_length words plus <end>
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
