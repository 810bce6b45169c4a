"""Training a CNN-RNN decoder: the cross-entropy phase, then (train.finetune_epochs > 0) fine-tuning with the
encoder's last stages, then (train.scst_epochs > 0) the self-critical phase, all under the shared epoch
driver (resume, checkpoints, validation, the kept epoch, patience)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from captioning.io import InputError
from captioning.models.attached_encoder import image_encoder, tunable_parameters
from captioning.models.decoders import Decoder
from captioning.params import TrainParams
from captioning.text.vocabulary import Vocabulary
from captioning.train import distributed
from captioning.train.cross_entropy import CrossEntropyPhase, caption_batches
from captioning.train.device import autocast_dtype
from captioning.train.driver import EpochDriver, Optimisation, RunLog, TrainResult, make_scheduler
from captioning.train.finetune import FineTuningPhase
from captioning.train.scst import SelfCriticalPhase
from captioning.train.split_data import SplitData


def check_single_process(decoder: Decoder, p: TrainParams) -> None:
    """What runs in one process only: under torchrun, say which option to change."""
    if distributed.rank_and_world()[1] == 1:
        return
    if p.scst_epochs:
        raise InputError("train.scst_epochs: self-critical training runs in one process; "
                         "train the cross-entropy epochs under torchrun, then the SCST epochs without it")
    if image_encoder(decoder) is not None:
        raise InputError("train.finetune_encoder / train.finetune_epochs: training the encoder runs in one process; "
                         "turn them off under torchrun")


def parameter_groups(decoder: Decoder, p: TrainParams) -> list[dict]:
    """The decoder at train.lr; the encoder stages that train (now, or in the fine-tuning epochs) at
    train.encoder_lr. Frozen parameters have no gradient, so the optimizer skips them until they thaw."""
    encoder = image_encoder(decoder)
    encoder_ids = set() if encoder is None else {id(q) for q in encoder.parameters()}
    tuned = tunable_parameters(decoder, p.finetune_blocks)       # none without an attached encoder
    groups = [{"params": [q for q in decoder.parameters() if id(q) not in encoder_ids], "lr": p.lr}]
    if tuned:
        groups.append({"params": tuned, "lr": p.encoder_lr})
    return groups


def train_decoder(decoder: Decoder, train: SplitData, val: SplitData, vocab: Vocabulary, p: TrainParams, seed: int,
                  device: torch.device, state_dir: Path, run_key: dict[str, str],
                  log: Optional[RunLog] = None) -> TrainResult:
    decoder.to(device)
    check_single_process(decoder, p)
    model = distributed.wrap(decoder, device)          # the decoder itself unless under torchrun
    distributed.seed_rank(seed)
    optimizer = torch.optim.Adam(parameter_groups(decoder, p))
    steps_per_epoch = len(caption_batches(train, p, decoder, seed, 0))
    amp_dtype = autocast_dtype(device, p.precision)
    optimisation = Optimisation(optimizer, make_scheduler(optimizer, p.lr_schedule, steps_per_epoch * p.epochs),
                                torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16),  # bf16 needs none
                                p.grad_clip, decoder)
    phases = [CrossEntropyPhase(model, decoder, train, val, vocab, p, seed, device, optimisation, amp_dtype),
              FineTuningPhase(model, decoder, train, val, vocab, p, seed, device, optimisation, amp_dtype),
              SelfCriticalPhase(decoder, train, val, vocab, p, seed, device, optimisation, amp_dtype)]
    driver = EpochDriver(decoder, optimisation, state_dir, run_key, p.patience, p.checkpoint_every,
                         distributed.is_main(), log)
    return driver.run(phases)
