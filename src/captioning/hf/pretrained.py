"""Find the two pretrained checkpoints (offline first), build the ViT-GPT2 model, its tokenizer and its
image preprocessing. A missing checkpoint stops at once with what is needed and how to provide it."""
from __future__ import annotations

import json
import os
from pathlib import Path

from captioning.io import InputError
from captioning.models.encoders import EncoderSpec

# Files a checkpoint needs here: configs, weights, tokenizer and image-processor files (no TF/Flax weights).
NEEDED_FILES = ["*.json", "*.safetensors", "*.txt", "merges.txt", "vocab.json"]
VIT_MEAN = VIT_STD = (0.5, 0.5, 0.5)     # ViTImageProcessor's defaults


def require_transformers():
    try:
        import transformers
    except ImportError:
        raise InputError("train.decoder = 'vit_gpt2' needs Hugging Face transformers, an optional extra: "
                         "pip install -e '.[hf]'") from None
    return transformers


def resolve_checkpoint(name: str, key: str) -> Path:
    """A local directory as given, else the Hub id's snapshot from the local cache (HF_HOME), else a download."""
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(name, allow_patterns=NEEDED_FILES, local_files_only=True))
    except Exception:
        pass
    try:
        return Path(snapshot_download(name, allow_patterns=NEEDED_FILES))
    except Exception as e:
        home = os.environ.get("HF_HOME", "~/.cache/huggingface")
        raise InputError(
            f"params.yaml: {key} = {name!r}: this pretrained checkpoint is needed but is neither a local directory "
            f"nor in the Hugging Face cache (HF_HOME={home}), and downloading it failed ({type(e).__name__}). "
            f"Provide it: run once with network; or on a machine with network run "
            f"`huggingface-cli download {name}` and copy its HF_HOME here (export HF_HOME=...); "
            f"or save it with save_pretrained() to a folder and set `{key}` to that folder") from None


def image_spec(encoder_dir: Path, image_size: int) -> EncoderSpec:
    """The encoder's preprocessing: its image processor's mean/std when it has one, else ViT's defaults."""
    mean, std = VIT_MEAN, VIT_STD
    processor = encoder_dir / "preprocessor_config.json"
    if processor.exists():
        config = json.loads(processor.read_text())
        mean, std = tuple(config.get("image_mean", mean)), tuple(config.get("image_std", std))
    return EncoderSpec("vit", image_size, mean, std, 0, (0, 0), build=None)


def load_pretrained(encoder: str, decoder: str):
    """-> (VisionEncoderDecoderModel, GPT-2 tokenizer, image spec) from `train.hf.encoder` / `train.hf.decoder`."""
    transformers = require_transformers()
    encoder_dir = resolve_checkpoint(encoder, "train.hf.encoder")
    decoder_dir = resolve_checkpoint(decoder, "train.hf.decoder")
    transformers.logging.set_verbosity_error()     # "newly initialised cross-attention weights" is expected
    # Built from the parts (not from_encoder_decoder_pretrained): GPT-2 becomes a decoder with new
    # cross-attention layers over the ViT's patch states, the same way in transformers 4 and 5.
    vit = transformers.AutoModel.from_pretrained(str(encoder_dir), add_pooling_layer=False)
    decoder_config = transformers.AutoConfig.from_pretrained(str(decoder_dir), is_decoder=True,
                                                             add_cross_attention=True)
    gpt2 = transformers.AutoModelForCausalLM.from_pretrained(str(decoder_dir), config=decoder_config)
    model = transformers.VisionEncoderDecoderModel(encoder=vit, decoder=gpt2)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(decoder_dir))
    prepare_special_tokens(model, tokenizer)
    return model, tokenizer, image_spec(encoder_dir, int(model.config.encoder.image_size))


def prepare_special_tokens(model, tokenizer) -> None:
    """GPT-2 has one special token, <|endoftext|>: it starts, ends and pads every caption."""
    end = tokenizer.eos_token_id
    if end is None:
        raise InputError("train.hf.decoder: its tokenizer has no end-of-text token (GPT-2's is <|endoftext|>)")
    tokenizer.pad_token = tokenizer.eos_token
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else end
    for config in (model.config, model.generation_config):
        config.decoder_start_token_id, config.eos_token_id, config.pad_token_id = start, end, end
