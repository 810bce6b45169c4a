"""Fine-tuning epochs (`train.finetune_epochs`): after the cross-entropy epochs, the best cross-entropy model
trains on with the encoder's last `train.finetune_blocks` stages unfrozen, from the resized images, at the
constant `train.encoder_lr` for encoder and decoder (the ResNet-18 report fine-tunes its CNN with the
decoder). Same loss and validation as the cross-entropy phase; kept only if validation improves."""
from __future__ import annotations

import math

import torch
from torch import nn

from captioning.models.attached_encoder import set_encoder_training
from captioning.models.decoders import Decoder
from captioning.params import TrainParams
from captioning.text.vocabulary import Vocabulary
from captioning.train.checkpoint import fingerprint
from captioning.train.cross_entropy import CrossEntropyPhase
from captioning.train.driver import Optimisation, RunState, restart_from_best
from captioning.train.split_data import SplitData

FIELDS = {"finetune_blocks", "encoder_lr"}


class FineTuningPhase(CrossEntropyPhase):
    name, label = "finetune", "fine-tuning"
    scheduled = False

    def __init__(self, model: nn.Module, decoder: Decoder, train: SplitData, val: SplitData, vocab: Vocabulary,
                 p: TrainParams, seed: int, device: torch.device, optimisation: Optimisation, amp_dtype):
        super().__init__(model, decoder, train, val, vocab, p, seed, device, optimisation, amp_dtype)
        self.epochs = p.finetune_epochs
        self.settings = fingerprint(p.model_dump(include=FIELDS))

    def start(self, state: RunState) -> None:
        best = restart_from_best(self.decoder, self.optimisation, state, self.p.encoder_lr)
        by_cider = self.p.select == "cider"
        state.best_score = best.get("val_cider", -math.inf) if by_cider else -best.get("val_loss", math.inf)

    def prepare(self) -> None:
        set_encoder_training(self.decoder, True, self.p.finetune_blocks)
