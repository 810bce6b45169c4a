"""The train stage: join features, captions and vocabulary, train, save the model artifact and logs."""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

import torch

from captioning.data.coco import load_captions
from captioning.features.store import FeatureStore
from captioning.io import atomic_write_json, atomic_write_text
from captioning.models.artifact import CaptionModel, save_model
from captioning.models.decoders import DecoderConfig, build_decoder
from captioning.params import Params
from captioning.text.vocabulary import Vocabulary
from captioning.train.captions import build_pairs
from captioning.train import distributed
from captioning.train.checkpoint import fingerprint
from captioning.train.device import pick_device, set_cpu_threads
from captioning.models.attached_encoder import ImageRows, attach_encoder
from captioning.train.loop import SplitData, TrainResult, train_decoder


def references_of(coco: dict) -> dict[int, list[str]]:
    refs = defaultdict(list)
    for ann in coco["annotations"]:
        refs[ann["image_id"]].append(ann["caption"])
    return dict(refs)


def load_split(features_dir: Path, subset_json: Path, vocab: Vocabulary) -> tuple[SplitData, FeatureStore]:
    store = FeatureStore(features_dir)
    coco = load_captions(subset_json)
    pairs = build_pairs(coco, {i: r for r, i in enumerate(store.ids)}, vocab)
    refs = references_of(coco)
    return SplitData(store.pooled, store.grid, list(store.ids), pairs, {i: refs.get(i, []) for i in store.ids},
                     views=tuple(store.views.values())), store


def _tsv(rows: list, header: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def write_logs(result: TrainResult, plots_dir: Path) -> None:
    atomic_write_text(plots_dir / "steps.tsv", _tsv(result.step_log, ["step", "epoch", "loss", "perplexity"]))
    header = list(dict.fromkeys(k for e in result.epoch_log for k in e)) or ["epoch"]
    atomic_write_text(plots_dir / "epochs.tsv", _tsv([[e.get(h) for h in header] for e in result.epoch_log], header))


def run_train(params: Params, features_dir: Path, subset_dir: Path, vocab_path: Path, models_dir: Path,
              state_dir: Path, metrics_path: Path, plots_dir: Path, images_dir: Path = Path("data/images")) -> dict:
    p = params.train
    if p.decoder == "vit_gpt2":      # pretrained transformers: trains from the images with GPT-2's tokenizer
        from captioning.hf.train import run_hf_train
        return run_hf_train(params, subset_dir, images_dir, models_dir, state_dir, metrics_path, plots_dir)
    set_cpu_threads()
    torch.manual_seed(params.seed)
    vocab = Vocabulary.load(vocab_path)
    train, train_store = load_split(features_dir / "train", subset_dir / "train.json", vocab)
    val, _ = load_split(features_dir / "val", subset_dir / "val.json", vocab)
    meta = train_store.meta
    config = DecoderConfig(vocab_size=len(vocab), pooled_dim=int(meta["pooled_dim"]), grid_channels=int(meta["grid_shape"][-1]),
                           embed_dim=p.embed_dim, hidden_dim=p.hidden_dim, num_layers=p.num_layers, dropout=p.dropout)
    decoder = build_decoder(p.decoder, config)
    if p.finetune_encoder:       # end to end: the encoder trains too, from the images of the same rows
        spec = attach_encoder(decoder, meta["encoder"], meta["weights"])
        train.images = ImageRows(images_dir / "train", train.ids, spec)
        val.images = ImageRows(images_dir / "val", val.ids, spec)
    device = distributed.init(p.device) or pick_device(p.device)   # under torchrun: this rank's device
    run_id = fingerprint(p.model_dump(exclude=p.scst_fields), params.seed, vocab.digest, meta, len(train.pairs), len(val.pairs))
    print(f"train: {p.decoder} on {device}, {len(train.pairs)} captions of {len(train.ids)} images, "
          f"{sum(x.numel() for x in decoder.parameters()):,} parameters")
    result = train_decoder(decoder, train, val, vocab, p, params.seed, device, state_dir, run_id,
                           on_epoch=lambda r: write_logs(r, plots_dir))
    if not distributed.is_main():      # rank 0 writes the model and logs
        distributed.shutdown()
        return {}
    write_logs(result, plots_dir)
    decoder.load_state_dict(result.best_state)
    encoder = {"name": meta["encoder"], "weights": meta["weights"], "pooled_dim": int(meta["pooled_dim"]),
               "grid_shape": list(meta["grid_shape"]), "finetuned": p.finetune_encoder}
    best = result.epoch_log[result.best_epoch - 1] if result.best_epoch else {}
    summary = {"epochs": result.epochs_run, "best_epoch": result.best_epoch, "device": str(device),
               "train_seconds": round(result.seconds, 1), "seconds_per_epoch": round(result.seconds / max(result.epochs_run, 1), 1),
               "final_train_loss": next((e["train_loss"] for e in reversed(result.epoch_log) if e.get("train_loss") is not None), None),
               "final_train_reward": next((e["train_reward"] for e in reversed(result.epoch_log) if e.get("train_reward") is not None), None),
               "best_val_loss": best.get("val_loss"), "best_val_bleu_4": best.get("val_bleu_4"),
               "best_val_cider": best.get("val_cider"), "scst_epochs": p.scst_epochs, "captions": len(train.pairs),
               "parameters": sum(x.numel() for x in decoder.parameters())}
    save_model(CaptionModel(p.decoder, decoder, vocab, encoder,
                            {"zero_features": p.zero_features, "training": summary}), models_dir)
    atomic_write_json(metrics_path, summary)
    distributed.shutdown()
    return summary
