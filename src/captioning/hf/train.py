"""Fine-tune ViT-GPT2 on the subset's captions, from the resized images (the encoder changes every step,
so cached CNN features cannot serve it). The same stage contract as the other decoders: seeded,
image-grouped batches (each image encoded once for all its captions), resumable checkpoints, the epoch
with the best greedy validation CIDEr kept, logs for the plots, the artifact in `models/`.
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from captioning.data.coco import load_captions
from captioning.hf.artifact import HfCaptionModel, save_hf_model
from captioning.hf.generate import TOKENS_PER_WORD, generate_captions
from captioning.hf.pretrained import load_pretrained
from captioning.io import InputError, atomic_write_json
from captioning.models.attached_encoder import ImageRows
from captioning.params import Params
from captioning.text.tokenizer import tokenize
from captioning.train import distributed
from captioning.train.captions import CaptionPairs, image_grouped_batches
from captioning.train.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from captioning.train.device import autocast_dtype, pick_device, set_cpu_threads
from captioning.train.loop import TrainResult, make_scheduler, restore_training, training_state
from captioning.train.validate import quick_scores

IGNORE = -100        # label positions the loss skips (padding)
UNSUPPORTED = ("scst_epochs", "scheduled_sampling", "zero_features")


def check_supported(params: Params) -> None:
    p = params.train
    if distributed.launched_by_torchrun():
        raise InputError("train.decoder = 'vit_gpt2' trains in one process (one GPU or the CPU); run it without torchrun")
    for key in UNSUPPORTED:
        if getattr(p, key):
            raise InputError(f"params.yaml: train.{key} = {getattr(p, key)!r}: not available with train.decoder = "
                             "'vit_gpt2'; set it back to its default")


def split_images(subset_json: Path, image_dir: Path) -> tuple[list[int], dict[int, list[str]]]:
    """Image ids with a resized image (resize skips bad images) and their captions."""
    coco = load_captions(subset_json)
    refs: dict[int, list[str]] = {}
    for ann in coco["annotations"]:
        refs.setdefault(ann["image_id"], []).append(ann["caption"])
    ids = [img["id"] for img in coco["images"] if (image_dir / f"{img['id']}.jpg").exists()]
    if not ids:
        raise InputError(f"{image_dir}: no resized images of {subset_json}; rerun `dvc repro resize`")
    return ids, {i: refs.get(i, []) for i in ids}


def caption_pairs(ids: list[int], refs: dict[int, list[str]], tokenizer, max_words: int) -> CaptionPairs:
    """One pair per caption: GPT-2 tokens of the normalised caption, then <|endoftext|>; padding = IGNORE."""
    rows, seqs = [], []
    for row, image_id in enumerate(ids):
        for caption in refs[image_id]:
            text = " ".join(tokenize(caption)[:max_words])
            seqs.append(tokenizer(text)["input_ids"][: TOKENS_PER_WORD * max_words] + [tokenizer.eos_token_id])
            rows.append(row)
    tokens = np.full((len(seqs), max(map(len, seqs), default=1)), IGNORE, dtype=np.int64)
    for i, s in enumerate(seqs):
        tokens[i, :len(s)] = s
    return CaptionPairs(np.asarray(rows, dtype=np.int64), tokens, np.asarray([len(s) for s in seqs], dtype=np.int64))


def caption_loss(model, pixels: torch.Tensor, index: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Cross-entropy of the captions; each distinct image goes through the ViT once, its captions share it."""
    from transformers.modeling_outputs import BaseModelOutput
    encoded = model.encoder(pixel_values=pixels).last_hidden_state[index]
    logits = model(encoder_outputs=BaseModelOutput(last_hidden_state=encoded), labels=labels).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                           ignore_index=IGNORE, label_smoothing=label_smoothing)


@torch.no_grad()
def validation_loss(model, images: ImageRows, pairs: CaptionPairs, device, batch_size: int = 64) -> float:
    """Teacher-forced cross-entropy per token on the validation captions."""
    model.eval()
    total, count = 0.0, 0
    for idx in image_grouped_batches(pairs, batch_size, seed=0, epoch=0):
        distinct, index = np.unique(pairs.rows[idx], return_inverse=True)
        labels = torch.from_numpy(pairs.tokens[idx, :int(pairs.lengths[idx].max())]).to(device)
        tokens = int((labels != IGNORE).sum())
        total += tokens * float(caption_loss(model, images.load(distinct).to(device),
                                             torch.from_numpy(index.reshape(-1)).to(device), labels, 0.0))
        count += tokens
    return total / max(count, 1)


def validation_captions(model, tokenizer, images: ImageRows, ids: list[int], device, max_length: int,
                        batch_size: int = 32) -> dict[int, str]:
    model.eval()
    out = {}
    for start in range(0, len(ids), batch_size):
        rows = np.arange(start, min(start + batch_size, len(ids)))
        captions = generate_captions(model, tokenizer, images.load(rows).to(device), 1, max_length)
        out.update({ids[r]: c for r, c in zip(rows, captions)})
    return out


def run_hf_train(params: Params, subset_dir: Path, images_dir: Path, models_dir: Path, state_dir: Path,
                 metrics_path: Path, plots_dir: Path) -> dict:
    from captioning.train.run import write_logs           # shared log format (imported late: no cycle)
    p, hf = params.train, params.train.hf
    check_supported(params)
    set_cpu_threads()
    torch.manual_seed(params.seed)
    model, tokenizer, spec = load_pretrained(hf.encoder, hf.decoder)
    max_words = params.vocab.max_length
    train_ids, train_refs = split_images(subset_dir / "train.json", images_dir / "train")
    val_ids, val_refs = split_images(subset_dir / "val.json", images_dir / "val")
    pairs = caption_pairs(train_ids, train_refs, tokenizer, max_words)
    val_pairs = caption_pairs(val_ids, val_refs, tokenizer, max_words)
    train_images, val_images = ImageRows(images_dir / "train", train_ids, spec), ImageRows(images_dir / "val", val_ids, spec)
    device = pick_device(p.device)
    model.to(device)
    print(f"train: vit_gpt2 ({hf.encoder} + {hf.decoder}) on {device}, {len(pairs)} captions of {len(train_ids)} images, "
          f"{sum(x.numel() for x in model.parameters()):,} parameters")

    optimizer = torch.optim.AdamW(model.parameters(), lr=hf.lr)
    batches_of = lambda epoch: image_grouped_batches(pairs, p.batch_size, params.seed, epoch)   # noqa: E731
    steps_per_epoch = len(batches_of(0))
    scheduler = make_scheduler(optimizer, p, steps_per_epoch * p.epochs)
    amp_dtype = autocast_dtype(device, p.precision)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    run_id = fingerprint(p.model_dump(exclude=p.scst_fields), params.seed, max_words, len(pairs), train_ids, val_ids)

    result = TrainResult(best_state={}, best_epoch=0, epochs_run=0)
    best_score, stale, epoch, batch_start, step = -math.inf, 0, 0, 0, 0
    saved = load_checkpoint(state_dir, run_id)
    if saved is not None:
        epoch, batch_start, step, best_score, stale, result = restore_training(saved, model, optimizer, scheduler)
        print(f"train: resuming at epoch {epoch + 1}, batch {batch_start} (step {step})")

    started = time.perf_counter()

    def checkpoint(next_epoch: int, next_batch: int) -> None:
        save_checkpoint(state_dir, training_state(run_id, next_epoch, next_batch, step, model, optimizer, scheduler,
                                                  best_score, stale, result, result.seconds + (time.perf_counter() - started)))

    while epoch < p.epochs and not (p.patience and stale >= p.patience):
        model.train()
        batches = batches_of(epoch)
        progress = tqdm(batches[batch_start:], desc=f"epoch {epoch + 1}/{p.epochs}", unit="batch", initial=batch_start,
                        total=len(batches), mininterval=2, leave=False)
        for b, idx in enumerate(progress, start=batch_start):
            distinct, index = np.unique(pairs.rows[idx], return_inverse=True)
            length = int(pairs.lengths[idx].max())
            labels = torch.from_numpy(pairs.tokens[idx, :length]).to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = caption_loss(model, train_images.load(distinct).to(device),
                                    torch.from_numpy(index.reshape(-1)).to(device), labels, p.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if p.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            value = float(loss.detach())
            result.step_log.append([step, epoch + 1, round(value, 5), round(math.exp(min(value, 50)), 4)])
            progress.set_postfix(loss=f"{value:.3f}", refresh=False)
            if step % p.checkpoint_every == 0 and b + 1 < len(batches):
                checkpoint(epoch, b + 1)
        progress.close()
        val_loss = validation_loss(model, val_images, val_pairs, device)
        captions = validation_captions(model, tokenizer, val_images, val_ids, device, max_words)
        scores = quick_scores(val_refs, captions)
        losses = [row[2] for row in result.step_log if row[1] == epoch + 1]
        result.epoch_log.append({"epoch": epoch + 1, "phase": "xe", "train_loss": round(float(np.mean(losses)), 5) if losses else None,
                                 "val_loss": round(val_loss, 5), "val_perplexity": round(math.exp(min(val_loss, 50)), 4),
                                 "val_bleu_4": round(scores["bleu_4"], 5), "val_cider": round(scores["cider"], 5),
                                 "lr": optimizer.param_groups[0]["lr"]})
        if scores["cider"] > best_score:
            best_score, stale = scores["cider"], 0
            result.best_state, result.best_epoch = copy.deepcopy(model.state_dict()), epoch + 1
        else:
            stale += 1
        print(f"epoch {epoch + 1}: train loss {result.epoch_log[-1]['train_loss']}  val loss {val_loss:.3f}  val BLEU-4 {scores['bleu_4']:.3f}  "
              f"val CIDEr {scores['cider']:.3f}")
        epoch, batch_start = epoch + 1, 0
        result.epochs_run = epoch
        checkpoint(epoch, 0)
        write_logs(result, plots_dir)
    result.seconds += time.perf_counter() - started

    write_logs(result, plots_dir)
    if result.best_state:
        model.load_state_dict(result.best_state)
    best = result.epoch_log[result.best_epoch - 1] if result.best_epoch else {}
    summary = {"epochs": result.epochs_run, "best_epoch": result.best_epoch, "device": str(device),
               "train_seconds": round(result.seconds, 1), "seconds_per_epoch": round(result.seconds / max(result.epochs_run, 1), 1),
               "final_train_loss": next((e["train_loss"] for e in reversed(result.epoch_log) if e.get("train_loss") is not None), None),
               "best_val_loss": best.get("val_loss"), "best_val_bleu_4": best.get("val_bleu_4"), "best_val_cider": best.get("val_cider"), "captions": len(pairs),
               "parameters": sum(x.numel() for x in model.parameters()),
               "checkpoints": {"encoder": hf.encoder, "decoder": hf.decoder}}
    save_hf_model(HfCaptionModel(model, tokenizer, spec, {"training": summary}), models_dir)
    atomic_write_json(metrics_path, summary)
    return summary
