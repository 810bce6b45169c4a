"""The vit_gpt2 model artifact in `models/`, in the Hugging Face layout: `save_pretrained` files of the
model (config.json, model.safetensors), its tokenizer and its image processor, so
`VisionEncoderDecoderModel.from_pretrained("models")` and `pipeline("image-to-text", model="models")` load
it as they load any Hub model; captioning.json says it is ours (the preprocessing and the training summary).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from captioning.hf.pretrained import prepare_special_tokens, require_transformers
from captioning.io import InputError, atomic_dir, atomic_write_json, read_json
from captioning.models.encoders import EncoderSpec

DECODER_NAME = "vit_gpt2"
OURS = "captioning.json"           # beside the Hugging Face files: what this project adds
NEEDED = ("config.json", "model.safetensors", "preprocessor_config.json", OURS)
FORMAT_VERSION = 2


@dataclass
class HfCaptionModel:
    model: object               # transformers.VisionEncoderDecoderModel
    tokenizer: object           # GPT-2's tokenizer
    spec: EncoderSpec           # image size and normalisation
    extra: dict                 # training summary


def is_hf_model(model_dir: str | Path) -> bool:
    ours = Path(model_dir) / OURS
    return ours.exists() and read_json(ours).get("decoder") == DECODER_NAME


def save_hf_model(m: HfCaptionModel, out_dir: str | Path) -> None:
    """Written beside `out_dir` and moved there whole, so a killed save leaves no half model."""
    transformers = require_transformers()
    size = m.spec.input_size
    with atomic_dir(out_dir) as staging:
        m.model.save_pretrained(str(staging), safe_serialization=True)
        m.tokenizer.save_pretrained(str(staging))
        transformers.ViTImageProcessor(size={"height": size, "width": size}, image_mean=list(m.spec.mean),
                                       image_std=list(m.spec.std)).save_pretrained(str(staging))
        atomic_write_json(staging / OURS, {"format_version": FORMAT_VERSION, "decoder": DECODER_NAME,
                                           "image": {"input_size": size, "mean": list(m.spec.mean),
                                                     "std": list(m.spec.std)}, **m.extra})


def load_hf_model(model_dir: str | Path, device: str | torch.device = "cpu") -> HfCaptionModel:
    transformers = require_transformers()
    model_dir = Path(model_dir)
    for name in NEEDED:
        if not (model_dir / name).exists():
            raise InputError(f"{model_dir / name}: missing; a vit_gpt2 model folder holds {', '.join(NEEDED)} and "
                             "the tokenizer's files (train one with `dvc exp run -S train.decoder=vit_gpt2`)")
    ours = read_json(model_dir / OURS)
    transformers.logging.set_verbosity_error()
    try:
        model = transformers.VisionEncoderDecoderModel.from_pretrained(str(model_dir))
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError, RuntimeError) as e:
        raise InputError(f"{model_dir}: not a loadable vit_gpt2 model ({e})") from None
    prepare_special_tokens(model, tokenizer)
    image = ours["image"]
    spec = EncoderSpec("vit", int(image["input_size"]), tuple(image["mean"]), tuple(image["std"]), 0, (0, 0),
                       build=None)
    extra = {k: v for k, v in ours.items() if k not in ("format_version", "decoder", "image")}
    return HfCaptionModel(model.to(device).eval(), tokenizer, spec, extra)
