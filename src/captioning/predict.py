"""Caption people's own images with a trained model folder (no pipeline needed)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from captioning.data.images import BadImage, load_rgb
from captioning.decode.beam import beam_search
from captioning.hf.artifact import HfCaptionModel, is_hf_model, load_hf_model
from captioning.hf.generate import generate_captions
from captioning.io import InputError
from captioning.models.artifact import CaptionModel, load_model
from captioning.models.attached_encoder import image_encoder
from captioning.models.decoders import ImageFeatures
from captioning.models.encoders import build_encoder, encoder_spec
from captioning.train.device import pick_device, set_cpu_threads

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class Caption:
    path: Path
    caption: Optional[str]
    error: Optional[str] = None
    words: tuple[str, ...] = ()
    attention: Optional[np.ndarray] = None     # [len(words), H*W] for attention decoders


def find_images(inputs: list[Path]) -> list[Path]:
    paths = []
    for item in inputs:
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif item.exists():
            paths.append(item)
        else:
            raise InputError(f"{item}: no such file or folder")
    if not paths:
        raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {', '.join(map(str, inputs))}")
    return paths


class Captioner:
    def __init__(self, model_dir: Path, device: str = "auto"):
        set_cpu_threads()
        self.device = pick_device(device)
        self.hf: Optional[HfCaptionModel] = load_hf_model(model_dir, self.device) if is_hf_model(model_dir) else None
        if self.hf is not None:        # vit_gpt2: its own preprocessing, captions through `generate`
            self.model, self.spec, self.encoder = None, self.hf.spec, None
            return
        self.model: CaptionModel = load_model(model_dir, self.device)
        enc = self.model.encoder
        attached = image_encoder(self.model.decoder)       # a fine-tuned encoder travels with the model
        self.spec, encoder = ((encoder_spec(enc["name"]), attached) if attached is not None
                              else build_encoder(enc["name"], enc["weights"]))
        if self.spec.pooled_dim != enc["pooled_dim"]:
            raise InputError(f"{model_dir}: the model expects {enc['pooled_dim']}-d features but encoder "
                             f"{enc['name']} gives {self.spec.pooled_dim}")
        self.encoder = encoder.to(self.device)

    @property
    def decoder_name(self) -> str:
        return "vit_gpt2" if self.hf is not None else self.model.decoder_name

    @property
    def has_attention(self) -> bool:
        return self.hf is None and self.model.decoder.has_attention

    def _batches(self, paths: list[Path], batch_size: int) -> Iterator[tuple[list[Path], list[Caption], torch.Tensor]]:
        good, bad, tensors = [], [], []
        for path in paths:
            try:
                tensors.append(self.spec.preprocess(load_rgb(path)))
                good.append(path)
            except BadImage as e:
                bad.append(Caption(path, None, str(e)))
            if len(good) == batch_size:
                yield good, bad, torch.stack(tensors)
                good, bad, tensors = [], [], []
        if good or bad:
            yield good, bad, torch.stack(tensors) if tensors else torch.empty(0)

    @torch.inference_mode()
    def caption(self, paths: list[Path], beam_size: int = 3, max_length: int = 20, batch_size: int = 16,
                length_penalty: float = 0.0) -> list[Caption]:
        """`length_penalty` as decode.length_penalty in params.yaml."""
        out: dict[Path, Caption] = {}
        for good, bad, images in self._batches(paths, batch_size):
            out.update({c.path: c for c in bad})
            if not good:
                continue
            if self.hf is not None:
                texts = generate_captions(self.hf.model, self.hf.tokenizer, images.to(self.device), beam_size,
                                          max_length, length_penalty)
                out.update({path: Caption(path, text, None, tuple(text.split())) for path, text in zip(good, texts)})
                continue
            vocab, decoder = self.model.vocab, self.model.decoder
            pooled, grid = self.encoder(images.to(self.device))
            feats = ImageFeatures(pooled.float(), grid.float() if decoder.needs_grid else None)
            if self.model.extra.get("zero_features"):
                feats = feats.zeros_like()
            hyps = beam_search(decoder, feats, vocab.start_id, vocab.end_id, beam_size, max_length, length_penalty)
            for path, hyp in zip(good, hyps):
                words = tuple(vocab.words[t] for t in hyp.tokens)
                attention = hyp.attention.numpy() if hyp.attention is not None else None
                out[path] = Caption(path, vocab.decode(hyp.tokens), None, words, attention)
        return [out[p] for p in paths]
