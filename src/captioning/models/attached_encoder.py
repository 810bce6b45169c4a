"""A model that carries its own encoder (`train.finetune_encoder`: the CNN trained with the decoder,
end to end from the resized images).

Cached features cannot be used when the encoder changes every step: each batch's images are decoded,
preprocessed and passed through the encoder with gradients. The encoder becomes part of the model
(the decoder's `image_encoder` submodule), so checkpoints, the kept best model and the artifact carry
it, and the decode stage and `caption predict` compute features with it. A pretrained encoder's BatchNorm
statistics stay as they are (it runs in eval mode), as fine-tuning with small batches needs; an encoder
trained from scratch (`features.weights: none`) has no statistics to keep, so its BatchNorm learns them.

With `train.finetune_epochs` the encoder is attached frozen: the cross-entropy epochs read the cached
features (the same numbers, far faster), and only the fine-tuning epochs unfreeze its last stages.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from PIL import Image
from torch import nn

from captioning.io import InputError
from captioning.models.decoders import Decoder, ImageFeatures
from captioning.models.encoders import EncoderSpec, build_encoder, last_stages

ENCODER_MODULE = "image_encoder"


class ImageRows:
    """Rows of a feature store -> preprocessed image tensors, read from the resize stage's <id>.jpg files."""

    def __init__(self, image_dir: Path, ids: list[int], spec: EncoderSpec):
        self.spec = spec
        self.paths = [Path(image_dir) / f"{i}.jpg" for i in ids]
        missing = [p for p in self.paths if not p.exists()]
        if missing:
            raise InputError(f"{missing[0]}: missing ({len(missing)} of {len(self.paths)} images in {image_dir}); "
                             "train.finetune_encoder reads the resize stage's images: rerun `dvc repro resize`")

    def load(self, rows) -> torch.Tensor:
        images = []
        for row in rows:
            with Image.open(self.paths[int(row)]) as image:
                images.append(self.spec.preprocess(image))
        return torch.stack(images)


def attach_encoder(decoder: Decoder, name: str, weights: str, from_scratch: bool = False) -> EncoderSpec:
    """Make the encoder a submodule of the decoder (so one state dict holds both), frozen until `set_encoder_training`.
    `from_scratch`: it trains from random weights, so its BatchNorm learns statistics instead of keeping them."""
    spec, encoder = build_encoder(name, weights)      # frozen: no parameter requires a gradient
    encoder.from_scratch = from_scratch
    decoder.add_module(ENCODER_MODULE, encoder)
    return spec


def tunable_parameters(decoder: nn.Module, blocks: Optional[int]) -> list[nn.Parameter]:
    """The parameters of the attached encoder's last `blocks` stages (None = all of them)."""
    encoder = image_encoder(decoder)
    if encoder is None:
        return []
    return [q for stage in last_stages(encoder, blocks) for q in stage.parameters()]


def set_encoder_training(decoder: nn.Module, trains: bool, blocks: Optional[int]) -> None:
    """The attached encoder's last `blocks` stages train (`trains`) or the whole encoder is frozen."""
    encoder = image_encoder(decoder)
    if encoder is None:
        return
    encoder.requires_grad_(False)
    if trains:
        for q in tunable_parameters(decoder, blocks):
            q.requires_grad_(True)


def active_encoder(decoder: nn.Module) -> Optional[nn.Module]:
    """The attached encoder while it trains (features come from the images), else None (cached features)."""
    encoder = image_encoder(decoder)
    if encoder is None or not any(q.requires_grad for q in encoder.parameters()):
        return None
    return encoder


def image_encoder(decoder: nn.Module) -> Optional[nn.Module]:
    return getattr(decoder, ENCODER_MODULE, None)


def keep_encoder_frozen_statistics(decoder: nn.Module) -> None:
    """After `decoder.train()`: the encoder's BatchNorm keeps its running statistics."""
    encoder = image_encoder(decoder)
    if encoder is not None and not encoder.from_scratch:
        encoder.eval()


def encode_images(encoder: nn.Module, images: torch.Tensor, need_grid: bool) -> ImageFeatures:
    pooled, grid = encoder(images.contiguous(memory_format=torch.channels_last))
    return ImageFeatures(pooled.float(), grid.float() if need_grid else None)
