"""The decode stage: caption every image of a split from its cached features."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from captioning.decode.beam import beam_search
from captioning.features.store import FeatureStore
from captioning.hf.artifact import HfCaptionModel
from captioning.io import InputError
from captioning.models.artifact import check_features_match
from captioning.models.attached_encoder import ImageRows, encode_images, image_encoder
from captioning.models.decoders import ImageFeatures
from captioning.models.encoders import encoder_spec
from captioning.models.loading import load_model_folder
from captioning.train.device import pick_device, set_cpu_threads


def decode_split(model_dir: Path, features_dir: Path, beam_size: int, max_length: int,
                 length_penalty: float = 0.0, batch_size: int = 128, device: str = "auto",
                 images_dir: Optional[Path] = None) -> list[dict]:
    """Captions of every image in the feature store; a model with a fine-tuned encoder reads the images
    (`images_dir`, the resize stage's <id>.jpg) through it instead of the cached features."""
    set_cpu_threads()
    dev = pick_device(device)
    store = FeatureStore(features_dir)
    loaded = load_model_folder(model_dir, dev)
    if loaded.hf is not None:       # vit_gpt2 reads the images (same image list as the features)
        if images_dir is None:
            raise InputError(f"{model_dir}: a vit_gpt2 model reads the images, so decoding needs them (--images)")
        return decode_hf_images(loaded.hf, images_dir, list(store.ids), beam_size, max_length, length_penalty,
                                batch_size, dev)
    model = loaded.ours
    check_features_match(model, store.meta, str(features_dir))
    zero = bool(model.extra.get("zero_features"))
    need_grid = model.decoder.needs_grid
    encoder = image_encoder(model.decoder)
    if encoder is not None and images_dir is None:
        raise InputError(f"{model_dir}: the model carries its fine-tuned encoder, "
                         "so decoding needs the images (--images)")
    images = None if encoder is None else ImageRows(images_dir, store.ids, encoder_spec(model.encoder["name"]))
    predictions = []
    for start in tqdm(range(0, len(store.ids), batch_size), desc="decode", unit="batch", mininterval=2):
        rows = np.arange(start, min(start + batch_size, len(store.ids)))
        if images is not None:
            with torch.inference_mode():
                feats = encode_images(encoder, images.load(rows).to(dev), need_grid)
        else:
            feats = ImageFeatures(*store.tensors(rows, need_grid)).to(dev)
        feats = feats.zeros_like() if zero else feats
        hyps = beam_search(model.decoder, feats, model.vocab.start_id, model.vocab.end_id, beam_size, max_length,
                           length_penalty)
        predictions += [{"image_id": int(store.ids[r]), "caption": model.vocab.decode(h.tokens)}
                        for r, h in zip(rows, hyps)]
    return predictions


def decode_hf_images(hf: HfCaptionModel, images_dir: Path, ids: list[int], beam_size: int, max_length: int,
                     length_penalty: float, batch_size: int, device) -> list[dict]:
    """vit_gpt2: `generate` on the resized images, batched (beam search through transformers)."""
    from captioning.hf.generate import generate_captions
    images = ImageRows(images_dir, ids, hf.spec)
    batch_size = min(batch_size, 32)     # the ViT's activations: keep memory modest
    predictions = []
    for start in tqdm(range(0, len(ids), batch_size), desc="decode", unit="batch", mininterval=2):
        rows = np.arange(start, min(start + batch_size, len(ids)))
        captions = generate_captions(hf.model, hf.tokenizer, images.load(rows).to(device), beam_size, max_length,
                                     length_penalty)
        predictions += [{"image_id": int(ids[r]), "caption": c} for r, c in zip(rows, captions)]
    return predictions
