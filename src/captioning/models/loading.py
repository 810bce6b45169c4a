"""Open any model folder the train stage writes, whatever its kind: this pipeline's decoders (models/artifact.py)
or vit_gpt2 in the Hugging Face layout (hf/artifact.py). The decode stage, the plots and `Captioner` all
open models here, so a new kind is added in one place.

Each model also says how a photo becomes its input: the resize the pipeline applied to its training images
(`resize.mode`, `resize.image_size`, recorded in its config), then the encoder's own preprocessing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from PIL import Image

from captioning.data.images import resize_image
from captioning.hf.artifact import DECODER_NAME as HF_DECODER_NAME
from captioning.hf.artifact import HfCaptionModel, is_hf_model, load_hf_model
from captioning.io import InputError
from captioning.models.artifact import CaptionModel, load_model
from captioning.models.encoders import EncoderSpec

RESIZE_MODES = ("squash", "crop")


@dataclass(frozen=True)
class Preprocessing:
    """The resize stage's step (None: a model folder that does not record it, whose photos go to the encoder
    as they are), then the encoder's normalisation."""
    image_size: Optional[int] = None
    mode: Optional[str] = None

    @classmethod
    def from_record(cls, recorded: Optional[dict], where: str) -> "Preprocessing":
        """From a config's `preprocessing` (models.artifact.resize_record); absent or empty: none."""
        resize = (recorded or {}).get("resize")
        if not resize:
            return cls()
        size, mode = resize.get("image_size"), resize.get("mode")
        if not isinstance(size, int) or size < 1 or mode not in RESIZE_MODES:
            raise InputError(f"{where}: preprocessing.resize = {resize!r} is not an image_size (pixels) and a mode "
                             f"({' or '.join(RESIZE_MODES)})")
        return cls(size, mode)

    def resize(self, image: Image.Image) -> Image.Image:
        """As the resize stage resized the training images (its own function), minus the JPEG it writes."""
        return image if self.image_size is None else resize_image(image, self.image_size, self.mode)

    def tensor(self, image: Image.Image, spec: EncoderSpec) -> torch.Tensor:
        """An RGB photo -> the encoder's input, as the features stage computed it from a resized image."""
        return spec.preprocess(self.resize(image))


@dataclass
class LoadedModel:
    """Exactly one of `ours` and `hf` is set."""
    ours: Optional[CaptionModel]
    hf: Optional[HfCaptionModel]
    preprocessing: Preprocessing

    @property
    def decoder_name(self) -> str:
        return HF_DECODER_NAME if self.hf is not None else self.ours.decoder_name

    @property
    def has_attention(self) -> bool:
        """Whether decoding gives attention weights over the image's grid (only our attention decoders do)."""
        return self.ours is not None and self.ours.decoder.has_attention


def load_model_folder(model_dir: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """The model in `model_dir` (models/, or a folder from `dvc artifacts get`), on `device`, in eval mode."""
    model_dir = Path(model_dir)
    if is_hf_model(model_dir):
        hf = load_hf_model(model_dir, device)
        return LoadedModel(None, hf, Preprocessing.from_record(hf.extra.get("preprocessing"), str(model_dir)))
    ours = load_model(model_dir, device)
    return LoadedModel(ours, None, Preprocessing.from_record(ours.preprocessing, str(model_dir)))
