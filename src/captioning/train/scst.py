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

import math
from typing import Optional

import numpy as np
import torch

from captioning.models.attached_encoder import active_encoder, keep_encoder_frozen_statistics, set_encoder_training
from captioning.models.decoders import Decoder, ImageFeatures
from captioning.models.decoders.base import forbid_special_tokens, worth_cutting
from captioning.params import TrainParams
from captioning.text.tokenizer import tokenize
from captioning.text.vocabulary import Vocabulary
from captioning.train.captions import image_batches
from captioning.train.checkpoint import fingerprint
from captioning.train.cider_reward import CiderD
from captioning.train.device import autocast_context
from captioning.train.driver import Optimisation, RunState, Validation, restart_from_best
from captioning.train.split_data import SplitData, mirror_words
from captioning.train.validate import greedy_scores

END_WORD = "<eos>"


def reward_references(references: dict[int, list[list[str]]]) -> CiderD:
    """The CIDEr-D rewarder over tokenized training references, each ending with END_WORD."""
    return CiderD({key: [ref + [END_WORD] for ref in refs] for key, refs in references.items()})


def draw_words(probs: torch.Tensor) -> torch.Tensor:
    """One word per row of `probs` [N, V] (unnormalised), by inverting the cumulative distribution at one
    uniform draw: torch.multinomial's distribution, but it draws an exponential per word (V per row), which
    made it the largest part of a sampling step on CPU. A word of probability 0 is never drawn."""
    cdf = probs.float().cumsum(dim=1)
    # just under the total: a product that rounds up to it would fall past the last word
    u = torch.rand(cdf.shape[0], 1, device=cdf.device) * (cdf[:, -1:] * (1 - 2 ** -20))
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.shape[1] - 1)


def sample_captions(decoder: Decoder, feats: ImageFeatures, samples: int, start_id: int, end_id: int,
                    max_length: int, draw=draw_words) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial samples, `samples` per image (image-major), never <pad>, <start> or <unk>. Returns tokens
    [B*S, T] (0 after <end>) and the summed log-probability of each caption under that sampling distribution
    (with gradient), <end> included. `draw`: probabilities [N, V] -> one word per row.

    Ended captions leave the batch, as in teacher forcing, in a few large cuts (when a quarter of the rows
    have ended): a batch runs as many steps as its longest sample, and most samples end well before it."""
    n = feats.pooled.shape[0] * samples
    device = feats.pooled.device
    index = torch.arange(feats.pooled.shape[0], device=device).repeat_interleave(samples)
    state = decoder.select(decoder.init_state(feats), index)      # per-image work once, then rows per sample
    rows = torch.arange(n, device=device)                         # the caption each state row samples
    token = torch.full((n,), start_id, dtype=torch.long, device=device)
    alive = torch.ones(n, dtype=torch.bool, device=device)
    tokens = torch.zeros((n, max_length + 1), dtype=torch.long, device=device)
    step_logprobs, step_rows = [], []
    for t in range(max_length + 1):        # max_length words plus <end>
        logits, state, _ = decoder.step(token, state)
        logp = torch.log_softmax(forbid_special_tokens(logits.float()), dim=-1)
        drawn = draw(logp.detach().exp())
        picked = logp.gather(1, drawn[:, None]).squeeze(1)
        step_logprobs.append(torch.where(alive, picked, torch.zeros_like(picked)))
        token = torch.where(alive, drawn, torch.zeros_like(drawn))
        step_rows.append(rows)
        tokens[rows, t] = token
        alive = alive & (token != end_id)
        if not alive.any():
            tokens = tokens[:, :t + 1]
            break
        if worth_cutting(int(alive.sum()), len(rows)):
            keep = alive.nonzero().squeeze(1)
            state, rows, token, alive = decoder.select(state, keep), rows[keep], token[keep], alive[keep]
    logprob = torch.zeros(n, device=device).index_add(0, torch.cat(step_rows), torch.cat(step_logprobs))
    return tokens, logprob


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
              samples: int, max_length: int, flipped: Optional[np.ndarray] = None) -> tuple[torch.Tensor, float]:
    """`reward` from reward_references. Summed policy-gradient loss over the batch's captions and their mean reward.
    `flipped`: images shown mirrored, whose samples are scored as the references' mirror (left and right swapped)."""
    tokens, logprob = sample_captions(decoder, feats, samples, vocab.start_id, vocab.end_id, max_length)
    captions = words_of(tokens, vocab, mark_end=True)
    if flipped is not None:
        captions = [mirror_words(c) if flipped[i // samples] else c for i, c in enumerate(captions)]
    rewards = torch.tensor([reward.score(keys[i // samples], c) for i, c in enumerate(captions)],
                           dtype=torch.float32).view(-1, samples)
    advantage = leave_one_out_advantage(rewards).view(-1).to(logprob.device)
    return -(advantage * logprob).sum(), float(rewards.mean())


def leave_one_out_advantage(rewards: torch.Tensor) -> torch.Tensor:
    """rewards [images, samples] -> each sample's reward minus the mean of its image's other samples."""
    baseline = (rewards.sum(dim=1, keepdim=True) - rewards) / max(rewards.shape[1] - 1, 1)
    return rewards - baseline


class SelfCriticalPhase:
    """SCST epochs after the cross-entropy ones: from the best cross-entropy model, with a fresh optimizer at
    `train.scst_lr` (constant), batches of images in a seeded order, kept only if greedy validation CIDEr
    beats that model's. Its settings (but their number of epochs) must match to resume inside the phase,
    so a finished run continues into added SCST epochs."""
    name, label = "scst", "SCST"

    def __init__(self, decoder: Decoder, train: SplitData, val: SplitData, vocab: Vocabulary, p: TrainParams,
                 seed: int, device: torch.device, optimisation: Optimisation, amp_dtype):
        self.decoder, self.train, self.val, self.vocab, self.p = decoder, train, val, vocab, p
        self.seed, self.device, self.optimisation, self.amp_dtype = seed, device, optimisation, amp_dtype
        self.epochs = p.scst_epochs
        self.settings = fingerprint(p.model_dump(include=p.scst_fields - {"scst_epochs"}))
        self.rewarder: CiderD | None = None

    def start(self, state: RunState) -> None:
        best = restart_from_best(self.decoder, self.optimisation, state, self.p.scst_lr)
        state.best_score = best.get("val_cider", -math.inf)

    def prepare(self) -> None:
        """The encoder's last stages go on training when the run trains them (fine-tuning epochs or
        finetune_encoder), the same after a resume inside this phase as in an uninterrupted run."""
        p = self.p
        set_encoder_training(self.decoder, p.finetune_encoder or p.finetune_epochs > 0, p.finetune_blocks)

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        if self.rewarder is None:
            train = self.train
            references = {i: [tokenize(r) for r in train.references.get(i, [])] for i in train.ids}
            self.rewarder = reward_references(references)
        self.decoder.train()
        keep_encoder_frozen_statistics(self.decoder)
        self.train.choose_views(self.seed, epoch)
        return image_batches(len(self.train.ids), self.p.scst_batch_size, self.seed, epoch)

    def step(self, idx: np.ndarray, epoch: int) -> dict[str, float]:
        p, decoder = self.p, self.decoder
        feats = self.train.features(idx, self.device, p.zero_features, decoder.needs_grid, active_encoder(decoder))
        with autocast_context(self.device, self.amp_dtype):
            flipped = self.train.flipped(idx, active_encoder(decoder))
            loss, reward = scst_loss(decoder, feats, [self.train.ids[r] for r in idx], self.rewarder, self.vocab,
                                     p.scst_samples, self.vocab.max_length, flipped)
        self.optimisation.update(loss / (len(idx) * p.scst_samples))
        return {"reward": reward}

    def validate(self, epoch: int) -> Validation:
        """Greedy CIDEr only: SCST does not optimise the likelihood, so its validation loss is not computed."""
        scores = greedy_scores(self.decoder, self.val, self.p.zero_features, self.device, self.vocab)
        log = {"val_loss": None, "val_perplexity": None, "val_bleu_4": round(scores["bleu_4"], 5),
               "val_cider": round(scores["cider"], 5)}
        return Validation(scores["cider"], log)
