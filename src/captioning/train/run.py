"""The train stage: join features, captions and vocabulary, train, save the model artifact and logs."""
from __future__ import annotations

from pathlib import Path

import torch

from captioning.code_deps import module_digest
from captioning.features.store import FeatureStore
from captioning.io import atomic_write_json, file_digest
from captioning.models.artifact import CaptionModel, resize_record, save_model
from captioning.models.attached_encoder import ImageRows, attach_encoder, image_encoder
from captioning.models.decoders import DecoderConfig, build_decoder
from captioning.params import Params
from captioning.text.vocabulary import Vocabulary
from captioning.train import distributed
from captioning.train.checkpoint import run_key
from captioning.train.device import autocast_dtype, pick_device, set_cpu_threads
from captioning.train.live_log import LiveLog
from captioning.train.logs import model_record, training_summary
from captioning.train.loop import train_decoder
from captioning.train.split_data import load_split


def training_run_key(params: Params, stores: list[FeatureStore], caption_files: list[Path],
                     vocab_path: Path) -> dict[str, str]:
    """Resume only the same run: the same train params (SCST's own are checked per phase), seed, code,
    and the same contents of the features (their digests, recorded by the features stage), captions and
    vocabulary. The resized images need no digest of their own: the features are computed from them."""
    p = params.train
    return run_key(params=p.model_dump(exclude=p.scst_fields), seed=params.seed,
                   code=module_digest(Path(__file__)),
                   features=[store.meta for store in stores],
                   captions=[file_digest(f) for f in caption_files], vocabulary=file_digest(vocab_path))


def run_train(params: Params, features_dir: Path, subset_dir: Path, vocab_path: Path, models_dir: Path,
              state_dir: Path, metrics_path: Path, live_dir: Path, images_dir: Path = Path("data/images")) -> dict:
    p = params.train
    if p.decoder == "vit_gpt2":      # pretrained transformers: trains from the images with GPT-2's tokenizer
        from captioning.hf.train import run_hf_train
        return run_hf_train(params, subset_dir, images_dir, models_dir, state_dir, metrics_path, live_dir)
    set_cpu_threads()
    torch.manual_seed(params.seed)
    vocab = Vocabulary.load(vocab_path)
    train, train_store = load_split(features_dir / "train", subset_dir / "train.json", vocab)
    val, val_store = load_split(features_dir / "val", subset_dir / "val.json", vocab)
    meta = train_store.meta
    config = DecoderConfig(vocab_size=len(vocab), pooled_dim=int(meta["pooled_dim"]),
                           grid_channels=int(meta["grid_shape"][-1]),
                           embed_dim=p.embed_dim, hidden_dim=p.hidden_dim, num_layers=p.num_layers, dropout=p.dropout)
    decoder = build_decoder(p.decoder, config)
    if p.finetune_encoder or p.finetune_epochs:   # the encoder trains too, from the images of the same rows
        spec = attach_encoder(decoder, meta["encoder"], meta["weights"],
                              from_scratch=p.finetune_encoder and meta["weights"] == "none")
        train.images = ImageRows(images_dir / "train", train.ids, spec)
        val.images = ImageRows(images_dir / "val", val.ids, spec)
    device = distributed.init(p.device) or pick_device(p.device)   # under torchrun: this rank's device
    run_id = training_run_key(params, [train_store, val_store], [subset_dir / "train.json", subset_dir / "val.json"],
                              vocab_path)
    print(f"train: {p.decoder} on {device}, {len(train.pairs)} captions of {len(train.ids)} images, "
          f"{sum(x.numel() for x in decoder.parameters()):,} parameters")
    log = LiveLog(live_dir) if distributed.is_main() else None
    result = train_decoder(decoder, train, val, vocab, p, params.seed, device, state_dir, run_id, log)
    if not distributed.is_main():      # rank 0 writes the model and logs
        distributed.shutdown()
        return {}
    decoder.load_state_dict(result.best_state)
    encoder = {"name": meta["encoder"], "weights": meta["weights"], "pooled_dim": int(meta["pooled_dim"]),
               "grid_shape": list(meta["grid_shape"]), "finetuned": image_encoder(decoder) is not None}
    summary = training_summary(result, device, autocast_dtype(device, p.precision), len(train.pairs),
                               sum(x.numel() for x in decoder.parameters()), scst_epochs=p.scst_epochs)
    save_model(CaptionModel(p.decoder, decoder, vocab, encoder,
                            {"zero_features": p.zero_features, "training": model_record(summary)},
                            resize_record(params.resize.image_size, params.resize.mode)), models_dir)
    atomic_write_json(metrics_path, summary)
    distributed.shutdown()
    return summary
