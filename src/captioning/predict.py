"""Caption your own images with a trained model folder (no pipeline needed).

    from captioning import Captioner
    captioner = Captioner.load("models")          # or a folder from `dvc artifacts get`
    captioner("photo.jpg")                        # -> "a dog runs on the grass"
    captioner([Image.open("a.png"), "b.jpg"])     # -> one caption each
    captioner("photo.jpg", attention=True)        # -> a Caption with words and attention maps

A photo is prepared as the pipeline prepared the model's training images: resized as the resize stage did
(the `resize.mode` and `resize.image_size` its config records), then the encoder's own preprocessing.
Decoding defaults to the settings the model was evaluated with (decoding.json, written by the export
stage), else beam 3 without length normalisation.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from captioning.data.images import BadImage, load_rgb, to_rgb
from captioning.decode.beam import beam_search
from captioning.hf.artifact import HfCaptionModel
from captioning.hf.generate import generate_captions
from captioning.io import InputError
from captioning.models.artifact import CaptionModel, decoding_settings
from captioning.models.attached_encoder import image_encoder
from captioning.models.decoders import ImageFeatures
from captioning.models.encoders import build_encoder, encoder_spec
from captioning.models.loading import load_model_folder
from captioning.train.device import pick_device, set_cpu_threads

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# COCO_val2014_000000391895.jpg (COCO 2014), 000000391895.jpg (2017), 391895.jpg (this pipeline's resized images)
COCO_FILE_NAME = re.compile(r"(?:COCO_[A-Za-z]+[0-9]*_)?([0-9]+)")
ImageInput = Union[str, Path, Image.Image]


@dataclass
class Caption:
    path: Optional[Path]                       # None for an image passed in memory
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
    def __init__(self, model_dir: str | Path, device: str = "auto"):
        set_cpu_threads()
        model_dir = Path(model_dir)
        self.device = pick_device(device)
        self.decoding = decoding_settings(model_dir)
        self.loaded = loaded = load_model_folder(model_dir, self.device)
        self.preprocessing = loaded.preprocessing
        self.hf: Optional[HfCaptionModel] = loaded.hf
        if self.hf is not None:        # vit_gpt2: its own image size and normalisation, captions through `generate`
            self.model, self.spec, self.encoder = None, self.hf.spec, None
            return
        self.model: CaptionModel = loaded.ours
        enc = self.model.encoder
        attached = image_encoder(self.model.decoder)       # a fine-tuned encoder travels with the model
        self.spec, encoder = ((encoder_spec(enc["name"]), attached) if attached is not None
                              else build_encoder(enc["name"], enc["weights"]))
        if self.spec.pooled_dim != enc["pooled_dim"]:
            raise InputError(f"{model_dir}: the model expects {enc['pooled_dim']}-d features but encoder "
                             f"{enc['name']} gives {self.spec.pooled_dim}")
        self.encoder = encoder.to(self.device)

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "auto") -> "Captioner":
        """A model folder (`models/`, or one fetched with `dvc artifacts get`), on the GPU when there is one."""
        return cls(model_dir, device)

    def __call__(self, images: ImageInput | list[ImageInput], attention: bool = False, **decoding):
        """Captions of one image (a path or a PIL image) or of a list of them: a string each, or with
        `attention` a Caption (words and attention maps). `decoding`: beam_size, max_length, length_penalty."""
        single = not isinstance(images, (list, tuple))
        results = self.caption([images] if single else list(images), **decoding)
        for r in results:
            if r.error is not None:
                raise InputError(f"{r.path}: {r.error}")
        out = results if attention else [r.caption for r in results]
        return out[0] if single else out

    @property
    def decoder_name(self) -> str:
        return self.loaded.decoder_name

    @property
    def has_attention(self) -> bool:
        return self.loaded.has_attention

    def _prepared(self, item: ImageInput) -> torch.Tensor:
        image = to_rgb(item) if isinstance(item, Image.Image) else load_rgb(item)
        return self.preprocessing.tensor(image, self.spec)

    def _batches(self, items: list[ImageInput], batch_size: int) -> Iterator[tuple[list[int], dict, torch.Tensor]]:
        """(positions of the readable images, {position: why} of the others, the readable ones' tensors)."""
        good, bad, tensors = [], {}, []
        for i, item in enumerate(items):
            try:
                tensors.append(self._prepared(item))
                good.append(i)
            except BadImage as e:
                bad[i] = str(e)
            if len(good) == batch_size:
                yield good, bad, torch.stack(tensors)
                good, bad, tensors = [], {}, []
        if good or bad:
            yield good, bad, torch.stack(tensors) if tensors else torch.empty(0)

    @torch.inference_mode()
    def caption(self, items: list[ImageInput], beam_size: Optional[int] = None, max_length: Optional[int] = None,
                length_penalty: Optional[float] = None, batch_size: int = 16, progress: bool = False) -> list[Caption]:
        """One Caption per item, in order; unreadable images come back with `error` set. Unset decoding
        settings are the model's (decoding.json) or the defaults."""
        settings = {**self.decoding, **{k: v for k, v in (("beam_size", beam_size), ("max_length", max_length),
                                                           ("length_penalty", length_penalty)) if v is not None}}
        out: dict[int, Caption] = {}
        bar = tqdm(total=len(items), desc="caption", unit="image", disable=not progress, mininterval=1)
        for good, bad, images in self._batches(items, batch_size):
            out.update({i: Caption(_path(items[i]), None, why) for i, why in bad.items()})
            if good:
                out.update(zip(good, self._caption_batch([_path(items[i]) for i in good], images, settings)))
            bar.update(len(good) + len(bad))
        bar.close()
        return [out[i] for i in range(len(items))]

    def _caption_batch(self, paths: list[Optional[Path]], images: torch.Tensor, settings: dict) -> list[Caption]:
        beam_size, max_length, length_penalty = (settings[k] for k in ("beam_size", "max_length", "length_penalty"))
        if self.hf is not None:
            texts = generate_captions(self.hf.model, self.hf.tokenizer, images.to(self.device), beam_size,
                                      max_length, length_penalty)
            return [Caption(path, text, None, tuple(text.split())) for path, text in zip(paths, texts)]
        vocab, decoder = self.model.vocab, self.model.decoder
        pooled, grid = self.encoder(images.to(self.device))
        feats = ImageFeatures(pooled.float(), grid.float() if decoder.needs_grid else None)
        if self.model.extra.get("zero_features"):
            feats = feats.zeros_like()
        hyps = beam_search(decoder, feats, vocab.start_id, vocab.end_id, beam_size, max_length, length_penalty)
        return [Caption(path, vocab.decode(h.tokens), None, tuple(vocab.words[t] for t in h.tokens),
                        h.attention.numpy() if h.attention is not None else None) for path, h in zip(paths, hyps)]


def coco_image_id(path: Path) -> Optional[int]:
    """The COCO image id a file name carries, or None when it carries none."""
    match = COCO_FILE_NAME.fullmatch(Path(path).stem)
    return int(match.group(1)) if match else None


def coco_results(captions: list[Caption]) -> list[dict]:
    """The captions in COCO results format, `{"image_id": int, "caption": str}`, as `COCO.loadRes` and the
    evaluation server take them; an image whose file name gives no id gets its `file_name` instead (no
    `image_id`: an invented one could name another COCO image). Unreadable images are left out."""
    rows = []
    for c in captions:
        if c.error is None:
            image_id = coco_image_id(c.path) if c.path is not None else None
            rows.append({"image_id": image_id, "caption": c.caption} if image_id is not None else
                        {"file_name": c.path.name if c.path is not None else None, "caption": c.caption})
    return rows


def _path(item: ImageInput) -> Optional[Path]:
    return None if isinstance(item, Image.Image) else Path(item)
