"""The vit_gpt2 model artifact in `models/`: the same layout as the other models (model.safetensors and
config.json), with GPT-2's tokenizer files in `tokenizer/` instead of the word vocabulary.

config.json holds the full transformers configuration, so loading builds the model without any
download and then reads the weights (safetensors; GPT-2's tied embedding is stored once).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from captioning.hf.pretrained import prepare_special_tokens, require_transformers
from captioning.io import InputError, atomic_path, atomic_write_json, read_json
from captioning.models.encoders import EncoderSpec

DECODER_NAME = "vit_gpt2"
WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer"
FORMAT_VERSION = 1


@dataclass
class HfCaptionModel:
    model: object               # transformers.VisionEncoderDecoderModel
    tokenizer: object           # GPT-2's tokenizer
    spec: EncoderSpec           # image size and normalisation
    extra: dict                 # training summary, for people reading config.json


def is_hf_model(model_dir: str | Path) -> bool:
    config = Path(model_dir) / CONFIG
    return config.exists() and read_json(config).get("decoder") == DECODER_NAME


def save_hf_model(m: HfCaptionModel, out_dir: str | Path) -> None:
    from safetensors.torch import save_model
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / WEIGHTS) as tmp:
        save_model(m.model, str(tmp))            # handles the tied lm_head / word embedding
    m.tokenizer.save_pretrained(str(out_dir / TOKENIZER))
    atomic_write_json(out_dir / CONFIG, {
        "format_version": FORMAT_VERSION, "decoder": DECODER_NAME,
        "hf_config": m.model.config.to_dict(),
        "image": {k: v for k, v in dataclasses.asdict(m.spec).items() if k in ("input_size", "mean", "std")},
        **m.extra,
    })


def load_hf_model(model_dir: str | Path, device: str | torch.device = "cpu") -> HfCaptionModel:
    from safetensors.torch import load_model
    transformers = require_transformers()
    model_dir = Path(model_dir)
    for name in (WEIGHTS, CONFIG, TOKENIZER):
        if not (model_dir / name).exists():
            raise InputError(f"{model_dir / name}: missing; a vit_gpt2 model folder holds {WEIGHTS}, {CONFIG} and "
                             f"{TOKENIZER}/ (train one with `dvc exp run -S train.decoder=vit_gpt2`)")
    config = read_json(model_dir / CONFIG)
    transformers.logging.set_verbosity_error()
    hf_config = transformers.VisionEncoderDecoderConfig.from_dict(config["hf_config"])
    vit = transformers.AutoModel.from_config(hf_config.encoder, add_pooling_layer=False)     # as trained: no pooler
    gpt2 = transformers.AutoModelForCausalLM.from_config(hf_config.decoder)
    model = transformers.VisionEncoderDecoderModel(config=hf_config, encoder=vit, decoder=gpt2)
    try:
        load_model(model, str(model_dir / WEIGHTS))
    except RuntimeError as e:
        raise InputError(f"{model_dir / WEIGHTS} does not match {model_dir / CONFIG}: {e}") from None
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir / TOKENIZER))
    prepare_special_tokens(model, tokenizer)
    image = config["image"]
    spec = EncoderSpec("vit", int(image["input_size"]), tuple(image["mean"]), tuple(image["std"]), 0, (0, 0),
                       build=None)
    extra = {k: v for k, v in config.items() if k not in ("format_version", "decoder", "hf_config", "image")}
    return HfCaptionModel(model.to(device).eval(), tokenizer, spec, extra)
