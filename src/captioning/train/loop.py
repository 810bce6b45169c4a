"""The training loop: teacher forcing, Adam, cross-entropy ignoring padding, validation by decoding;
then, when `scst_epochs` > 0, self-critical epochs on CIDEr-D starting from the best cross-entropy model.

Resumable at step granularity (see checkpoint.py); keeps the epoch with the best validation score.
"""
from __future__ import annotations

import copy
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from captioning.models.decoders import Decoder, ImageFeatures
from captioning.io import InputError
from captioning.params import TrainParams
from captioning.text.tokenizer import tokenize
from captioning.text.vocabulary import Vocabulary
from captioning.train.captions import CaptionPairs, epoch_batches, image_batches, image_grouped_batches
from captioning.train import distributed
from captioning.train.device import autocast_dtype
from captioning.models.attached_encoder import ImageRows, encode_images, image_encoder, keep_encoder_frozen_statistics
from captioning.train.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from captioning.train.cider_reward import CiderD
from captioning.train.scheduled_sampling import sampling_probability, scheduled_sampling_logits
from captioning.train.grid_crop import random_grid_crops
from captioning.train.scst import reward_references, scst_loss
from captioning.train.validate import greedy_captions, quick_scores
from captioning.train.weight_average import WeightAverage


def _read_rows(arrays: list[np.ndarray], rows: np.ndarray, which: Optional[np.ndarray]) -> np.ndarray:
    """Rows as float32, row i read from arrays[which[i]] (the views of one split, row for row)."""
    if which is None or not which.any():
        return np.asarray(arrays[0][rows], dtype=np.float32)
    out = np.empty((len(rows),) + arrays[0].shape[1:], dtype=np.float32)
    for view in np.unique(which):
        chosen = which == view
        out[chosen] = arrays[view][rows[chosen]]
    return out


def choose_views(count: int, images: int, seed: int, epoch: int) -> np.ndarray:
    """One view per image for an epoch, uniform over `count` views, seeded (a resumed epoch sees the same).
    With two views this is the mirror draw of earlier versions (view 1 where the uniform number is < 0.5)."""
    uniform = np.random.default_rng([seed, epoch, 1]).random(images)
    return (count - 1 - np.floor(uniform * count)).astype(np.int64)


def set_dropout(model: nn.Module, rate: float) -> None:
    """The rate of every dropout layer of `model`, attention weights' dropout included (the rate is no
    weight: a saved model does not keep it)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = rate
        elif isinstance(module, nn.MultiheadAttention):
            module.dropout = rate


@dataclass
class SplitData:
    pooled: np.ndarray                 # [N, D] (memory-mapped float16 is fine)
    grid: Optional[np.ndarray]         # [N, L, C] or None
    ids: list[int]                     # image id per row
    pairs: CaptionPairs
    references: dict[int, list[str]]   # image id -> reference captions
    images: Optional[ImageRows] = None  # the images themselves, for train.finetune_encoder
    views: tuple[tuple[np.ndarray, np.ndarray], ...] = ()   # (pooled, grid) of other views (mirrored, cropped), row for row
    view_rows: Optional[np.ndarray] = None   # [N] int: 0 = the originals, k = views[k - 1] (set per epoch by training)

    def features(self, rows: np.ndarray, device, zero: bool, need_grid: bool,
                 encoder: Optional[nn.Module] = None) -> ImageFeatures:
        """Cached features of `rows` (in the views `view_rows` says), or (given the model's
        trainable `encoder`) the encoder's on the images."""
        if encoder is not None and self.images is not None:
            feats = encode_images(encoder, self.images.load(rows).to(device), need_grid)
            return feats.zeros_like() if zero else feats
        rows = np.asarray(rows)
        which = None if self.view_rows is None or not self.views else self.view_rows[rows]
        pooled = torch.from_numpy(_read_rows([self.pooled] + [v[0] for v in self.views], rows, which))
        grid = torch.from_numpy(_read_rows([self.grid] + [v[1] for v in self.views], rows, which)) if need_grid else None
        feats = ImageFeatures(pooled, grid)
        return (feats.zeros_like() if zero else feats).to(device)

    def caption_features(self, rows: np.ndarray, device, zero: bool, need_grid: bool, shared: bool,
                         encoder: Optional[nn.Module] = None) -> ImageFeatures:
        """Features for captions of the images at `rows`: with `shared`, one row per distinct image plus an index
        (the decoder shares its per-image work); an encoder runs once per distinct image either way."""
        if not shared and encoder is None:
            return self.features(rows, device, zero, need_grid)
        images, index = np.unique(rows, return_inverse=True)
        feats = self.features(images, device, zero, need_grid, encoder)
        feats.index = torch.from_numpy(index.reshape(-1)).to(device)
        return feats if shared else feats.per_caption()


@dataclass
class TrainResult:
    best_state: dict
    best_epoch: int
    epochs_run: int
    step_log: list = field(default_factory=list)     # [step, epoch, loss, perplexity]
    epoch_log: list = field(default_factory=list)    # dicts per epoch
    seconds: float = 0.0


def restore_training(saved: dict, model: nn.Module, optimizer, scheduler) -> tuple[int, int, int, float, int, TrainResult]:
    """A checkpoint's model, optimizer, scheduler and RNG back in place -> (epoch, batch, step, best score,
    epochs without improvement, the result so far)."""
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"])
    result = TrainResult(saved["best_model"], saved["best_epoch"], saved["epoch"], saved["step_log"], saved["epoch_log"], saved["seconds"])
    return saved["epoch"], saved["batch"], saved["step"], saved["best_score"], saved["stale"], result


def training_state(run_id: str, next_epoch: int, next_batch: int, step: int, model: nn.Module, optimizer, scheduler,
                   best_score: float, stale: int, result: TrainResult, seconds: float) -> dict:
    """What restore_training needs, for save_checkpoint."""
    return {"fingerprint": run_id, "epoch": next_epoch, "batch": next_batch, "step": step, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(),
            "best_score": best_score, "stale": stale, "best_model": result.best_state, "best_epoch": result.best_epoch,
            "step_log": result.step_log, "epoch_log": result.epoch_log, "seconds": seconds}


def make_scheduler(optimizer, p: TrainParams, total_steps: int):
    if p.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / max(total_steps, 1))))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)


@torch.no_grad()
def _val_loss(decoder: Decoder, data: SplitData, p: TrainParams, device, amp_dtype=None) -> float:
    """Teacher-forced cross-entropy per token, in the training precision: on Flickr8k dev bf16 takes 10 s
    against 19 s in float32, and gives 2.70316 against 2.70308."""
    decoder.eval()
    total, count = 0.0, 0
    for start in range(0, len(data.pairs), 512):
        idx = np.arange(start, min(start + 512, len(data.pairs)))
        tokens = torch.from_numpy(data.pairs.tokens[idx]).to(device)
        feats = data.caption_features(data.pairs.rows[idx], device, p.zero_features, decoder.needs_grid,
                                      decoder.shares_image_work, image_encoder(decoder))
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = decoder(feats, tokens[:, :-1])
        mask = tokens[:, 1:] != 0
        total += float(nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1),
                                                   ignore_index=0, reduction="sum"))
        count += int(mask.sum())
    return total / max(count, 1)


@torch.no_grad()
def _val_captions(decoder, data: SplitData, p: TrainParams, device, vocab, max_length) -> dict[int, str]:
    decoder.eval()
    rows = np.arange(len(data.ids))
    encoder = image_encoder(decoder)
    batches = ((np.asarray(data.ids)[rows[s:s + 256]],
                data.features(rows[s:s + 256], device, p.zero_features, decoder.needs_grid, encoder))
               for s in range(0, len(rows), 256))
    return greedy_captions(decoder, batches, vocab, max_length)


def _parameter_groups(decoder: Decoder, p: TrainParams) -> list[dict]:
    """The decoder at train.lr; a trainable encoder (train.finetune_encoder) at train.encoder_lr."""
    encoder = image_encoder(decoder)
    encoder_params = [] if encoder is None else [q for q in encoder.parameters() if q.requires_grad]
    mine = {id(q) for q in encoder_params}
    groups = [{"params": [q for q in decoder.parameters() if id(q) not in mine and q.requires_grad], "lr": p.lr}]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": p.encoder_lr})
    return groups


def _train_rewarder(train: SplitData) -> CiderD:
    return reward_references({i: [tokenize(r) for r in train.references.get(i, [])] for i in train.ids})


def train_decoder(decoder: Decoder, train: SplitData, val: SplitData, vocab: Vocabulary, p: TrainParams, seed: int,
                  device: torch.device, state_dir: Path, run_fingerprint: str,
                  on_epoch: Optional[Callable[[TrainResult], None]] = None) -> TrainResult:
    decoder.to(device)
    model = distributed.wrap(decoder, device)          # the decoder itself unless under torchrun
    world = distributed.rank_and_world()[1]
    if p.scst_epochs and world > 1:
        raise InputError("train.scst_epochs: self-critical training runs in one process; "
                         "train the cross-entropy epochs under torchrun, then the SCST epochs without it")
    if p.scheduled_sampling and world > 1:
        raise InputError(f"train.scheduled_sampling = {p.scheduled_sampling}: runs in one process only; "
                         "set it to 0 under torchrun")
    if image_encoder(decoder) is not None and world > 1:
        raise InputError("train.finetune_encoder: end-to-end training runs in one process; set it to false under torchrun")
    if p.scst_grid_crop and not decoder.needs_grid:
        raise InputError(f"train.scst_grid_crop = {p.scst_grid_crop}: crops the feature grid, which {p.decoder} does not read; "
                         "set it to null or use a decoder with attention")
    optimizer = torch.optim.Adam(_parameter_groups(decoder, p))

    def xe_batches(epoch: int) -> list[np.ndarray]:
        if decoder.shares_image_work and p.group_by_image:
            return image_grouped_batches(train.pairs, p.batch_size, seed, epoch)
        return epoch_batches(train.pairs, p.batch_size, seed, epoch)

    steps_per_epoch = len(xe_batches(0))
    scheduler = make_scheduler(optimizer, p, steps_per_epoch * p.epochs)
    # Summed, then divided by the global batch's token count: the same gradient on 1 or N ranks.
    summed = nn.CrossEntropyLoss(ignore_index=vocab.pad_id, label_smoothing=p.label_smoothing, reduction="sum")
    amp_dtype = autocast_dtype(device, p.precision)
    use_amp = amp_dtype is not None
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)   # bf16 needs no loss scaling
    # The SCST settings act only after the cross-entropy epochs: a finished cross-entropy run's checkpoint
    # continues into added SCST epochs, but a checkpoint taken mid-SCST needs the same SCST settings
    # (their number aside: more SCST epochs continue where the last one ended).
    scst_fingerprint = fingerprint(p.model_dump(include=p.scst_fields - {"scst_epochs"}))

    result = TrainResult(best_state=copy.deepcopy(decoder.state_dict()), best_epoch=0, epochs_run=0)
    best_score, stale, epoch, batch_start, step = -math.inf, 0, 0, 0, 0
    average: Optional[WeightAverage] = None            # train.scst_ema: the SCST weights' moving average
    saved = load_checkpoint(state_dir, run_fingerprint)
    # Saved mid-SCST: past the cross-entropy epochs, or inside the first SCST epoch.
    saved_in_scst = saved is not None and (saved["epoch"], saved["batch"]) > (p.epochs, 0)
    if saved_in_scst and saved.get("scst_fingerprint") != scst_fingerprint:
        print(f"train: the checkpoint in {state_dir} is from other SCST settings; starting from scratch")
        saved = None
    if saved is not None:
        epoch, batch_start, step, best_score, stale, result = restore_training(saved, decoder, optimizer, scheduler)
        if saved.get("weight_average") is not None:
            average = WeightAverage(decoder, p.scst_ema)
            average.load_state_dict(saved["weight_average"])
        if epoch > p.epochs + p.scst_epochs:
            print(f"train: the checkpoint in {state_dir} has run {epoch} epochs, more than the {p.epochs + p.scst_epochs} "
                  "asked for; its best model is kept")
        else:
            print(f"train: resuming at epoch {epoch + 1}, batch {batch_start} (step {step})")

    def checkpoint(next_epoch: int, next_batch: int):
        if not distributed.is_main():
            return
        state = training_state(run_fingerprint, next_epoch, next_batch, step, decoder, optimizer, scheduler, best_score,
                               stale, result, result.seconds + (time.perf_counter() - started))
        save_checkpoint(state_dir, {**state, "scst_fingerprint": scst_fingerprint,
                                    "weight_average": average.state_dict() if average is not None else None})

    started = time.perf_counter()
    rewarder: Optional[CiderD] = None
    while epoch < p.epochs + p.scst_epochs:
        scst = epoch >= p.epochs
        if not scst and p.patience and stale >= p.patience:
            epoch, batch_start = p.epochs, 0               # early stop: on to the SCST epochs, if any
            continue
        if scst and batch_start == 0 and epoch == p.epochs:
            # SCST starts from the best cross-entropy model, with a fresh optimizer at its own rate, and must
            # beat that model's validation CIDEr to be kept.
            decoder.load_state_dict(result.best_state)
            optimizer.state.clear()
            for group in optimizer.param_groups:
                group["lr"] = p.scst_lr
            best_epoch_log = result.epoch_log[result.best_epoch - 1] if result.best_epoch else {}
            best_score, stale = best_epoch_log.get("val_cider", -math.inf), 0
            average = WeightAverage(decoder, p.scst_ema) if p.scst_ema else None
        if scst and p.patience and stale >= p.patience:
            break
        if scst and rewarder is None:
            rewarder = _train_rewarder(train)
        if scst and p.scst_dropout is not None:
            set_dropout(decoder, p.scst_dropout)
        decoder.train()
        keep_encoder_frozen_statistics(decoder)
        if train.views:   # each image in one of its views this epoch
            train.view_rows = choose_views(1 + len(train.views), len(train.ids), seed, epoch)
        if scst:
            batches = image_batches(len(train.ids), p.scst_batch_size, seed, epoch)
        else:
            batches = xe_batches(epoch)
        if world > 1:   # every rank needs a non-empty share of each global batch
            batches = [b for b in batches if len(b) >= world]
        progress = tqdm(batches[batch_start:], desc=f"{'SCST ' if scst else ''}epoch {epoch + 1}/{p.epochs + p.scst_epochs}",
                        unit="batch", initial=batch_start, total=len(batches), mininterval=2, leave=False)
        rewards = []
        for b, idx in enumerate(progress, start=batch_start):
            if scst:
                feats = train.features(idx, device, p.zero_features, decoder.needs_grid, image_encoder(decoder))
                if p.scst_grid_crop:
                    feats = random_grid_crops(feats, p.scst_grid_crop)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    loss, reward = scst_loss(decoder, feats, [train.ids[r] for r in idx], rewarder, vocab,
                                             p.scst_samples, vocab.max_length)
                loss = loss / (len(idx) * p.scst_samples)
                rewards.append(reward)
                progress.set_postfix(reward=f"{reward:.3f}", refresh=False)
            else:
                length = int(train.pairs.lengths[idx].max())
                n_tokens = max(int((train.pairs.tokens[idx, 1:length] != vocab.pad_id).sum()), 1)
                mine = distributed.shard(idx)
                tokens = torch.from_numpy(train.pairs.tokens[mine, :length]).to(device)
                feats = train.caption_features(train.pairs.rows[mine], device, p.zero_features, decoder.needs_grid,
                                               decoder.shares_image_work, image_encoder(decoder))
                sampling = sampling_probability(p.scheduled_sampling, epoch, p.epochs)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    if sampling:
                        logits = scheduled_sampling_logits(decoder, feats, tokens[:, :-1], sampling)
                    else:
                        logits = model(feats, tokens[:, :-1])
                    loss = summed(logits.float().reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1)) * (world / n_tokens)
                    loss = loss + (0.0 if sampling else decoder.auxiliary_loss())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if p.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(decoder.parameters(), p.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if scst and average is not None:
                average.update(decoder)
            step += 1
            if not scst:
                scheduler.step()
                value = distributed.global_mean(float(loss.detach()))
                result.step_log.append([step, epoch + 1, round(value, 5), round(math.exp(min(value, 50)), 4)])
                progress.set_postfix(loss=f"{value:.3f}", refresh=False)
            if step % p.checkpoint_every == 0 and b + 1 < len(batches):
                checkpoint(epoch, b + 1)
        progress.close()

        # With train.scst_ema, SCST epochs validate (and keep) the weights' moving average.
        validated = average.applied(decoder) if scst and average is not None else nullcontext()
        with validated:
            # SCST does not optimise the likelihood (its val loss only rises): 18 s a Flickr8k epoch saved by skipping it.
            val_loss = None if scst else _val_loss(decoder, val, p, device, amp_dtype)
            captions = _val_captions(decoder, val, p, device, vocab, vocab.max_length)
            scores = quick_scores(val.references, captions)
            score = scores["cider"] if (p.select == "cider" or scst) else -val_loss
            improved = score > best_score
            if improved:     # copied here: these are the validated weights (the average, with train.scst_ema)
                result.best_state, result.best_epoch = copy.deepcopy(decoder.state_dict()), epoch + 1
        epoch_losses = [row[2] for row in result.step_log if row[1] == epoch + 1]
        result.epoch_log.append({"epoch": epoch + 1, "phase": "scst" if scst else "xe",
                                 "train_loss": round(float(np.mean(epoch_losses)), 5) if epoch_losses else None,
                                 "train_reward": round(float(np.mean(rewards)), 5) if rewards else None,
                                 "val_loss": None if scst else round(val_loss, 5),
                                 "val_perplexity": None if scst else round(math.exp(min(val_loss, 50)), 4),
                                 "val_bleu_4": round(scores["bleu_4"], 5), "val_cider": round(scores["cider"], 5),
                                 "lr": optimizer.param_groups[0]["lr"],
                                 "sampling": None if scst else sampling_probability(p.scheduled_sampling, epoch, p.epochs)})
        if improved:
            best_score, stale = score, 0
        else:
            stale += 1
        head = (f"train reward (CIDEr-D) {result.epoch_log[-1]['train_reward']:.3f}" if scst
                else f"train loss {result.epoch_log[-1]['train_loss']:.3f}")
        print(f"epoch {epoch + 1}: {head}{'' if scst else f'  val loss {val_loss:.3f}'}  "
              f"val BLEU-4 {scores['bleu_4']:.3f}  val CIDEr {scores['cider']:.3f}")
        epoch, batch_start = epoch + 1, 0
        result.epochs_run = epoch
        checkpoint(epoch, 0)
        if on_epoch and distributed.is_main():
            on_epoch(result)
    result.seconds += time.perf_counter() - started
    return result
