"""Fine-tune ViT-GPT2 on the subset's captions, from the resized images (the encoder changes every step,
so cached CNN features cannot serve it). The same stage contract as the other decoders, through the same
epoch driver: seeded, image-grouped batches (each image encoded once for all its captions), resumable
checkpoints, the epoch with the best greedy validation CIDEr kept, logs for the plots, the artifact in
`models/`.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from captioning.code_deps import module_digest
from captioning.data.coco import load_captions, references_of
from captioning.hf.artifact import HfCaptionModel, save_hf_model
from captioning.hf.generate import TOKENS_PER_WORD, generate_captions
from captioning.hf.pretrained import load_pretrained
from captioning.io import InputError, atomic_write_json, file_digest, folder_digest
from captioning.models.artifact import resize_record
from captioning.models.attached_encoder import ImageRows
from captioning.params import Params, TrainParams
from captioning.text.tokenizer import detokenize, tokenize
from captioning.train import distributed
from captioning.train.captions import CaptionPairs, image_grouped_batches
from captioning.train.checkpoint import run_key
from captioning.train.device import autocast_context, autocast_dtype, pick_device, set_cpu_threads
from captioning.train.driver import EpochDriver, Optimisation, RunState, Validation, make_scheduler
from captioning.train.live_log import LiveLog
from captioning.train.logs import model_record, training_summary
from captioning.train.validate import quick_scores

IGNORE = -100        # label positions the loss skips (padding)
def split_images(subset_json: Path, image_dir: Path) -> tuple[list[int], dict[int, list[str]]]:
    """Image ids with a resized image (resize skips bad images) and their captions."""
    coco = load_captions(subset_json)
    refs = references_of(coco)
    ids = [img["id"] for img in coco["images"] if (image_dir / f"{img['id']}.jpg").exists()]
    if not ids:
        raise InputError(f"{image_dir}: no resized images of {subset_json}; rerun `dvc repro resize`")
    return ids, {i: refs.get(i, []) for i in ids}


def caption_pairs(ids: list[int], refs: dict[int, list[str]], tokenizer, max_words: int) -> CaptionPairs:
    """One pair per caption: GPT-2 tokens of the normalised caption, then <|endoftext|>; padding = IGNORE."""
    rows, seqs = [], []
    for row, image_id in enumerate(ids):
        for caption in refs[image_id]:
            text = detokenize(tokenize(caption)[:max_words])   # GPT-2 learns text as people write it
            seqs.append(tokenizer(text)["input_ids"][: TOKENS_PER_WORD * max_words] + [tokenizer.eos_token_id])
            rows.append(row)
    tokens = np.full((len(seqs), max(map(len, seqs), default=1)), IGNORE, dtype=np.int64)
    for i, s in enumerate(seqs):
        tokens[i, :len(s)] = s
    return CaptionPairs(np.asarray(rows, dtype=np.int64), tokens, np.asarray([len(s) for s in seqs], dtype=np.int64))


def caption_loss(model, pixels: torch.Tensor, index: torch.Tensor, labels: torch.Tensor,
                 label_smoothing: float) -> torch.Tensor:
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


class FineTuningPhase:
    """vit_gpt2's epochs: AdamW on the captions' cross-entropy, both networks trained end to end."""
    name, label = "xe", "fine-tuning"
    settings = ""      # its parameters are part of the run's fingerprint

    def __init__(self, model, tokenizer, data: dict, p: TrainParams, seed: int, device: torch.device,
                 optimisation: Optimisation, max_words: int):
        self.model, self.tokenizer, self.data, self.p, self.seed, self.device = model, tokenizer, data, p, seed, device
        self.optimisation, self.max_words, self.epochs = optimisation, max_words, p.epochs
        self.amp_dtype = autocast_dtype(device, p.precision)

    def start(self, state: RunState) -> None:
        pass

    def prepare(self) -> None:
        pass       # the whole model trains in every epoch

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        self.model.train()
        return image_grouped_batches(self.data["pairs"], self.p.batch_size, self.seed, epoch)

    def step(self, idx: np.ndarray, epoch: int) -> dict[str, float]:
        pairs = self.data["pairs"]
        distinct, index = np.unique(pairs.rows[idx], return_inverse=True)
        labels = torch.from_numpy(pairs.tokens[idx, :int(pairs.lengths[idx].max())]).to(self.device)
        with autocast_context(self.device, self.amp_dtype):
            loss = caption_loss(self.model, self.data["train_images"].load(distinct).to(self.device),
                                torch.from_numpy(index.reshape(-1)).to(self.device), labels, self.p.label_smoothing)
        self.optimisation.update(loss)
        self.optimisation.scheduler.step()
        return {"loss": float(loss.detach())}

    def validate(self, epoch: int) -> Validation:
        data = self.data
        val_loss = validation_loss(self.model, data["val_images"], data["val_pairs"], self.device)
        captions = validation_captions(self.model, self.tokenizer, data["val_images"], data["val_ids"], self.device,
                                       self.max_words)
        scores = quick_scores(data["val_refs"], captions)
        log = {"val_loss": round(val_loss, 5), "val_perplexity": round(math.exp(min(val_loss, 50)), 4),
               "val_bleu_4": round(scores["bleu_4"], 5), "val_cider": round(scores["cider"], 5)}
        return Validation(scores["cider"], log)


def load_data(subset_dir: Path, images_dir: Path, tokenizer, spec, max_words: int) -> dict:
    """The training and validation images and captions, tokenized with GPT-2's tokenizer."""
    train_ids, train_refs = split_images(subset_dir / "train.json", images_dir / "train")
    val_ids, val_refs = split_images(subset_dir / "val.json", images_dir / "val")
    return {"pairs": caption_pairs(train_ids, train_refs, tokenizer, max_words), "train_ids": train_ids,
            "val_pairs": caption_pairs(val_ids, val_refs, tokenizer, max_words),
            "val_ids": val_ids, "val_refs": val_refs,
            "train_images": ImageRows(images_dir / "train", train_ids, spec),
            "val_images": ImageRows(images_dir / "val", val_ids, spec)}


def run_hf_train(params: Params, subset_dir: Path, images_dir: Path, models_dir: Path, state_dir: Path,
                 metrics_path: Path, live_dir: Path) -> dict:
    p, hf = params.train, params.train.hf
    if distributed.launched_by_torchrun():
        raise InputError("train.decoder = 'vit_gpt2' trains in one process (one GPU or the CPU); "
                         "run it without torchrun")
    set_cpu_threads()
    torch.manual_seed(params.seed)
    model, tokenizer, spec = load_pretrained(hf.encoder, hf.decoder)
    max_words = params.vocab.max_length
    data = load_data(subset_dir, images_dir, tokenizer, spec, max_words)
    device = pick_device(p.device)
    model.to(device)
    print(f"train: vit_gpt2 ({hf.encoder} + {hf.decoder}) on {device}, {len(data['pairs'])} captions of "
          f"{len(data['train_ids'])} images, {sum(x.numel() for x in model.parameters()):,} parameters")
    optimizer = torch.optim.AdamW(model.parameters(), lr=hf.lr)
    steps_per_epoch = len(image_grouped_batches(data["pairs"], p.batch_size, params.seed, 0))
    fp16 = autocast_dtype(device, p.precision) == torch.float16
    optimisation = Optimisation(optimizer, make_scheduler(optimizer, p.lr_schedule, steps_per_epoch * p.epochs),
                                torch.amp.GradScaler("cuda", enabled=fp16), p.grad_clip, model)
    run_id = run_key(params=p.model_dump(exclude=p.scst_fields), seed=params.seed, max_words=max_words,
                     code=module_digest(Path(__file__)),
                     captions=[file_digest(subset_dir / f"{s}.json") for s in ("train", "val")],
                     images=[folder_digest(images_dir / s) for s in ("train", "val")])
    phase = FineTuningPhase(model, tokenizer, data, p, params.seed, device, optimisation, max_words)
    driver = EpochDriver(model, optimisation, state_dir, run_id, p.patience, p.checkpoint_every, log=LiveLog(live_dir))
    result = driver.run([phase])
    model.load_state_dict(result.best_state)
    summary = training_summary(result, device, phase.amp_dtype, len(data["pairs"]),
                               sum(x.numel() for x in model.parameters()),
                               checkpoints={"encoder": hf.encoder, "decoder": hf.decoder})
    record = {"training": model_record(summary),
              "preprocessing": resize_record(params.resize.image_size, params.resize.mode)}
    save_hf_model(HfCaptionModel(model, tokenizer, spec, record), models_dir)
    atomic_write_json(metrics_path, summary)
    return summary
