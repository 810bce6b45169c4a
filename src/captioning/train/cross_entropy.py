"""The cross-entropy phase: teacher forcing, one Adam step per batch of captions,
validated by the teacher-forced loss and greedy captions scored with the toolkit's BLEU and CIDEr-D."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from captioning.models.attached_encoder import active_encoder, keep_encoder_frozen_statistics, set_encoder_training
from captioning.models.decoders import Decoder
from captioning.params import TrainParams
from captioning.text.vocabulary import Vocabulary
from captioning.train import distributed
from captioning.train.captions import epoch_batches, image_grouped_batches
from captioning.train.device import autocast_context
from captioning.train.driver import Optimisation, RunState, Validation
from captioning.train.split_data import SplitData
from captioning.train.validate import greedy_scores


def caption_batches(train: SplitData, p: TrainParams, decoder: Decoder, seed: int, epoch: int) -> list[np.ndarray]:
    """Batches of whole images for decoders that share per-image work (train.group_by_image), else of captions."""
    if decoder.shares_image_work and p.group_by_image:
        return image_grouped_batches(train.pairs, p.batch_size, seed, epoch)
    return epoch_batches(train.pairs, p.batch_size, seed, epoch)


@torch.no_grad()
def validation_loss(decoder: Decoder, data: SplitData, p: TrainParams, device, amp_dtype=None) -> float:
    """Teacher-forced cross-entropy per token, in the training precision (bench/validation_loss.py: bf16
    gives the float32 loss to 4 decimals at about half the time)."""
    decoder.eval()
    total, count = 0.0, 0
    for start in range(0, len(data.pairs), 512):
        idx = np.arange(start, min(start + 512, len(data.pairs)))
        tokens = torch.from_numpy(data.pairs.tokens[idx]).to(device)
        feats = data.caption_features(data.pairs.rows[idx], device, p.zero_features, decoder.needs_grid,
                                      decoder.shares_image_work, active_encoder(decoder))
        with autocast_context(device, amp_dtype):
            logits = decoder(feats, tokens[:, :-1])
        mask = tokens[:, 1:] != 0
        total += float(nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                                   tokens[:, 1:].reshape(-1), ignore_index=0, reduction="sum"))
        count += int(mask.sum())
    return total / max(count, 1)


class CrossEntropyPhase:
    name, label = "xe", "cross-entropy"
    settings = ""      # its parameters are part of the run's fingerprint
    scheduled = True   # the learning-rate schedule advances with each step

    def __init__(self, model: nn.Module, decoder: Decoder, train: SplitData, val: SplitData, vocab: Vocabulary,
                 p: TrainParams, seed: int, device: torch.device, optimisation: Optimisation, amp_dtype):
        self.model, self.decoder, self.train, self.val, self.vocab = model, decoder, train, val, vocab
        self.p, self.seed, self.device, self.optimisation, self.amp_dtype = p, seed, device, optimisation, amp_dtype
        self.epochs = p.epochs
        self.world = distributed.rank_and_world()[1]
        # Summed, then divided by the global batch's token count: the same gradient on 1 or N ranks.
        self.summed = nn.CrossEntropyLoss(ignore_index=vocab.pad_id, label_smoothing=p.label_smoothing, reduction="sum")

    def start(self, state: RunState) -> None:
        pass

    def prepare(self) -> None:
        """The encoder trains from the first epoch only with finetune_encoder (the fine-tuning epochs thaw it
        later)."""
        set_encoder_training(self.decoder, self.p.finetune_encoder, self.p.finetune_blocks)

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        self.decoder.train()
        keep_encoder_frozen_statistics(self.decoder)
        self.train.choose_views(self.seed, epoch)
        batches = caption_batches(self.train, self.p, self.decoder, self.seed, epoch)
        if self.world > 1:   # every rank needs a non-empty share of each global batch
            batches = [b for b in batches if len(b) >= self.world]
        return batches

    def step(self, idx: np.ndarray, epoch: int) -> dict[str, float]:
        p, train, decoder = self.p, self.train, self.decoder
        length = int(train.pairs.lengths[idx].max())
        n_tokens = max(int((train.pairs.tokens[idx, 1:length] != self.vocab.pad_id).sum()), 1)
        mine = distributed.shard(idx)
        tokens = torch.from_numpy(train.caption_tokens(mine, length, active_encoder(decoder))).to(self.device)
        with autocast_context(self.device, self.amp_dtype):
            feats = train.caption_features(train.pairs.rows[mine], self.device, p.zero_features, decoder.needs_grid,
                                           decoder.shares_image_work, active_encoder(decoder))   # encoder in bf16 too
            logits = self.model(feats, tokens[:, :-1])
            loss = self.summed(logits.float().reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
            loss = loss * (self.world / n_tokens)
            loss = loss + decoder.auxiliary_loss()
        self.optimisation.update(loss)
        if self.scheduled:
            self.optimisation.scheduler.step()
        return {"loss": distributed.global_mean(float(loss.detach()))}

    def validate(self, epoch: int) -> Validation:
        p = self.p
        val_loss = validation_loss(self.decoder, self.val, p, self.device, self.amp_dtype)
        scores = greedy_scores(self.decoder, self.val, p.zero_features, self.device, self.vocab)
        log = {"val_loss": round(val_loss, 5), "val_perplexity": round(math.exp(min(val_loss, 50)), 4),
               "val_bleu_4": round(scores["bleu_4"], 5), "val_cider": round(scores["cider"], 5)}
        return Validation(scores["cider"] if p.select == "cider" else -val_loss, log)
