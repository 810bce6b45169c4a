"""The trained model artifact in `models/`: weights (safetensors), a JSON config and the vocabulary.

Enough for `caption` to load and run it on another machine without the pipeline. Nothing is pickled.
Loading checks that the weights, the config and the vocabulary agree, and says how to rebuild if not.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from captioning.io import InputError, atomic_path, atomic_write_json, read_json
from captioning.models.attached_encoder import attach_encoder
from captioning.models.decoders import Decoder, DecoderConfig, build_decoder
from captioning.text.vocabulary import Vocabulary

WEIGHTS, CONFIG, VOCAB = "model.safetensors", "config.json", "vocab.json"
DECODING = "decoding.json"          # the settings the model was evaluated with (export stage)
DEFAULT_DECODING = {"beam_size": 3, "max_length": 20, "length_penalty": 0.0}
FORMAT_VERSION = 1


def decoding_settings(model_dir: str | Path) -> dict:
    """How to decode with this model: its decoding.json (what it was evaluated with), else the defaults."""
    path = Path(model_dir) / DECODING
    saved = read_json(path) if path.exists() else {}
    return {key: saved.get(key, value) for key, value in DEFAULT_DECODING.items()}


@dataclass
class CaptionModel:
    decoder_name: str
    decoder: Decoder
    vocab: Vocabulary
    encoder: dict          # {"name", "weights", "pooled_dim", "grid_shape"}: what the features came from
    extra: dict            # training summary (epochs, best epoch, ...) for people reading config.json
    preprocessing: dict = field(default_factory=dict)   # resize_record(): how the training images were resized


def resize_record(image_size: int, mode: str) -> dict:
    """What config.json keeps of the resize stage (`resize.image_size`, `resize.mode`), so that a photo
    captioned later is resized as the images the model learnt from were. Read by models/loading.py."""
    return {"resize": {"image_size": image_size, "mode": mode}}


def save_model(model: CaptionModel, out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.decoder.state_dict().items()}
    with atomic_path(out_dir / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    model.vocab.save(out_dir / VOCAB)
    atomic_write_json(out_dir / CONFIG, {
        "format_version": FORMAT_VERSION,
        "decoder": model.decoder_name,
        "decoder_config": dataclasses.asdict(model.decoder.config),
        "vocab_size": len(model.vocab),
        "vocab_digest": model.vocab.digest,
        "encoder": model.encoder,
        **({"preprocessing": model.preprocessing} if model.preprocessing else {}),
        **model.extra,
    })


def load_model(model_dir: str | Path, device: str | torch.device = "cpu") -> CaptionModel:
    """This pipeline's own decoders; captioning.models.loading.load_model_folder opens any model folder."""
    model_dir = Path(model_dir)
    for name in (WEIGHTS, CONFIG, VOCAB):
        if not (model_dir / name).exists():
            raise InputError(f"{model_dir / name}: missing; a model folder holds {WEIGHTS}, {CONFIG} and {VOCAB}"
                             " (train one with `dvc repro train`)")
    config = read_json(model_dir / CONFIG)
    if "decoder_config" not in config:
        raise InputError(f"{model_dir / CONFIG}: not a model of this pipeline's decoders (no decoder_config); "
                         "open a model folder of any kind with captioning.models.loading.load_model_folder")
    vocab = Vocabulary.load(model_dir / VOCAB)
    if config.get("vocab_digest") != vocab.digest or config.get("vocab_size") != len(vocab):
        raise InputError(f"{model_dir / VOCAB} does not belong to this model (config says {config.get('vocab_size')} "
                         f"words, digest {config.get('vocab_digest')}; the file has {len(vocab)}, {vocab.digest}); "
                         "retrain with `dvc repro train` so they are saved together")
    decoder = build_decoder(config["decoder"], DecoderConfig(**config["decoder_config"]))
    if config["encoder"].get("finetuned"):      # its weights are in WEIGHTS: build it without downloading any
        attach_encoder(decoder, config["encoder"]["name"], "none")
    try:
        decoder.load_state_dict(load_file(str(model_dir / WEIGHTS)))
    except RuntimeError as e:
        raise InputError(f"{model_dir / WEIGHTS} does not match {model_dir / CONFIG}: {e}") from None
    decoder.to(device).eval()
    known = ("format_version", "decoder", "decoder_config", "vocab_size", "vocab_digest", "encoder", "preprocessing")
    extra = {k: v for k, v in config.items() if k not in known}
    # a folder written before the preprocessing was recorded has none: {} (the photo goes straight to the encoder)
    return CaptionModel(config["decoder"], decoder, vocab, config["encoder"], extra, config.get("preprocessing", {}))


def check_features_match(model: CaptionModel, features_meta: dict, where: str) -> None:
    """The model can only read features from the encoder it was trained on."""
    want = (model.encoder.get("name"), model.encoder.get("weights"), model.encoder.get("pooled_dim"))
    got = (features_meta.get("encoder"), features_meta.get("weights"), features_meta.get("pooled_dim"))
    if want != got:
        raise InputError(f"{where}: features come from encoder/weights/dim {got} but the model was trained on {want}; "
                         "rerun `dvc repro` so features and model are rebuilt together")
