"""Any timm backbone as the image encoder: `features.encoder: timm/<model name>` (any `timm.list_models()`
name, with or without a pretrained tag such as `vit_base_patch16_clip_224.openai`).

The model describes itself, so the EncoderSpec stays the single description the pipeline reads:
- preprocessing from its pretrained config (`timm.data.resolve_model_data_config`): input size,
  interpolation, mean and std. What is applied where, as for the registry encoders:
  the resize stage makes every image a square of `resize.image_size` pixels (`resize.mode`: squash = the whole
  image, crop = the centre square of the shorter side): the only framing decision, shared by the features,
  fine-tuning and `caption predict`. `EncoderSpec.preprocess` then resamples that square to the model's input
  size with the model's interpolation (nothing to do when `resize.image_size` equals it) and normalises with
  the model's mean/std. timm's eval-time `crop_pct` (a centre crop of 87.5-95 %) is deliberately not applied:
  it would cut the image borders a caption may be about, and the registry encoders do not apply it either.
- the grid from `forward_features`: a CNN's [B, C, H, W] map (or [B, H, W, C] for NHWC models such as Swin)
  flattened to [B, H*W, C], pooled = its mean; a ViT's patch tokens [B, N, C] without the class and register
  tokens (`num_prefix_tokens`), pooled = the class token where the model has one, else the grid's mean.
  Dims and grid_hw come from one forward pass on a dummy input.
- weights: `imagenet` = timm's pretrained weights for the name (from the Hugging Face Hub at run time, cached
  under HF_HOME; ImageNet for most names, the tag's data for tagged ones), `none` = random, or the path of a
  weights file (.safetensors/.pth/.bin, .npz for the ViTs timm reads that way) loaded through timm's own
  pretrained loader (`pretrained_cfg_overlay=dict(file=...)`, so its checkpoint filters apply).
"""
from __future__ import annotations

import difflib
import math
from functools import lru_cache, partial
from pathlib import Path

import torch
from torch import nn

from captioning.io import InputError
from captioning.models.encoders import RESAMPLING, TIMM_PREFIX, EncoderSpec, FeatureMapEncoder, TimmForwardFeatures


class TimmEncoder(FeatureMapEncoder):
    """forward gives (pooled [B, D], grid [B, H*W, C]) for a timm CNN or ViT; `stages()` is timm's coarse
    grouping of its parameters (stem, each stage or block, final norm), what `train.finetune_blocks` counts."""

    def __init__(self, name: str, model: nn.Module, input_size: int):
        super().__init__(TimmForwardFeatures(model))
        self.name, self.input_size = name, input_size
        output_format = getattr(model, "output_fmt", "NCHW")
        self.channels_last_output = getattr(output_format, "value", output_format) == "NHWC"
        self.prefix_tokens = int(getattr(model, "num_prefix_tokens", 0) or 0)
        has_class_token = getattr(model, "has_class_token", getattr(model, "cls_token", None) is not None)
        self.class_token = bool(has_class_token) and self.prefix_tokens > 0
        self.stages_countable = callable(getattr(model, "group_matcher", None))
        self._used_by_forward_features: set[str] | None = None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(self.backbone(images))

    def split(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """forward_features' output -> (pooled, grid)."""
        if features.ndim == 4:                                   # a feature map
            grid = features.flatten(1, 2) if self.channels_last_output else features.flatten(2).transpose(1, 2)
            return grid.mean(dim=1), grid
        if features.ndim != 3:
            raise RuntimeError(f"{self.name}: forward_features gives shape {tuple(features.shape)}; "
                               "expected [B, C, H, W] or [B, tokens, C]")
        grid = features[:, self.prefix_tokens:]                  # patch tokens only
        return (features[:, 0] if self.class_token else grid.mean(dim=1)), grid

    def stages(self) -> list[nn.Module]:
        """timm's coarse parameter groups in input-to-output order, each keeping only the parameters
        `forward_features` uses (a classifier head's norm is not part of the grid); without a group_matcher,
        the whole model as one stage (`last_stages` then refuses to count)."""
        model = self.backbone.model
        if not self.stages_countable:
            return [model]
        from timm.models import group_parameters

        if self._used_by_forward_features is None:
            self._used_by_forward_features = self._parameters_forward_features_uses()
        used = self._used_by_forward_features
        named = dict(model.named_parameters())
        groups = group_parameters(model, model.group_matcher(coarse=True))
        kept = [[named[n] for n in names if n in used] for names in groups.values()]
        return [nn.ParameterList(params) for params in kept if params]

    def _parameters_forward_features_uses(self) -> set[str]:
        """Names of the parameters that get a gradient from one dummy forward_features pass (the model's
        flags, gradients and mode are put back as they were)."""
        model = self.backbone.model
        saved = {n: (q.requires_grad, q.grad) for n, q in model.named_parameters()}
        was_training = model.training
        model.eval().requires_grad_(True)
        model.zero_grad(set_to_none=True)
        try:
            device = next(model.parameters()).device
            with torch.enable_grad():
                dummy = torch.zeros(1, 3, self.input_size, self.input_size, device=device)
                model.forward_features(dummy).float().sum().backward()
            return {n for n, q in model.named_parameters() if q.grad is not None}
        finally:
            for n, q in model.named_parameters():
                q.requires_grad_(saved[n][0])
                q.grad = saved[n][1]
            model.train(was_training)


def timm_model_name(name: str) -> str:
    """`timm/<model>` -> `<model>`, refusing names timm does not know (with the closest ones it does)."""
    import timm

    model_name = name[len(TIMM_PREFIX):]
    known = set(timm.list_models()) | set(timm.list_models(pretrained=True))
    if model_name not in known:
        close = difflib.get_close_matches(model_name, sorted(known), n=5, cutoff=0.6)
        hint = (f"; did you mean {', '.join(TIMM_PREFIX + c for c in close)}?" if close
                else "; timm.list_models('*pattern*') lists the names")
        raise InputError(f"features.encoder = {name!r}: timm {timm.__version__} has no model {model_name!r}{hint}")
    return model_name


def _create_from_hub(model_name: str) -> nn.Module:
    import timm
    from timm.models import get_pretrained_cfg

    try:
        return timm.create_model(model_name, pretrained=True)
    except (OSError, RuntimeError) as e:   # offline: huggingface_hub's LocalEntryNotFoundError is an OSError
        cfg = get_pretrained_cfg(model_name)
        where = f"hf.co/{cfg.hf_hub_id}" if cfg is not None and cfg.hf_hub_id else "its Hugging Face Hub repository"
        raise InputError(
            f"features.encoder = {TIMM_PREFIX}{model_name} with features.weights = imagenet: could not load timm's "
            f"pretrained weights ({type(e).__name__}: {str(e).splitlines()[0][:300]}). Ways out: run once with "
            "network so the Hugging Face cache (HF_HOME, default ~/.cache/huggingface) holds them "
            "(HF_HUB_OFFLINE=1 then skips the network); or download the weights file (model.safetensors from "
            f"{where}) and set features.weights to its path; or features.weights = none (random weights)") from None


def _create_from_file(model_name: str, weights: str) -> nn.Module:
    import timm

    path = Path(weights).expanduser()
    if not path.is_file():
        raise InputError(f"features.weights = {weights!r}: no such file (a weights file for "
                         f"{TIMM_PREFIX}{model_name}; a model trained on it needs the same file to caption)")
    overlay = {"file": str(path), "custom_load": path.suffix == ".npz"}   # .npz: the ViTs' own reader
    try:
        return timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay)
    except (OSError, RuntimeError, KeyError, ValueError, AttributeError) as e:
        raise InputError(f"features.weights = {weights!r}: not weights of {TIMM_PREFIX}{model_name} "
                         f"({type(e).__name__}: {str(e)[:500]})") from None


def create_timm_model(model_name: str, weights: str) -> nn.Module:
    """The timm model with `weights` (imagenet | none | a file path), without its classifier, in eval mode."""
    import timm

    if weights == "none":
        model = timm.create_model(model_name, pretrained=False)
    elif weights == "imagenet":
        model = _create_from_hub(model_name)
    else:
        model = _create_from_file(model_name, weights)
    if callable(getattr(model, "reset_classifier", None)):
        model.reset_classifier(0)        # the classifier is never used: the grid is forward_features'
    return model.eval()


def _backbone(model_name: str, pretrained: bool) -> TimmForwardFeatures:
    """EncoderSpec.build's contract (pretrained -> backbone); build_timm_encoder also takes weight files."""
    return TimmForwardFeatures(create_timm_model(model_name, "imagenet" if pretrained else "none"))


def _grid_hw(model: nn.Module, features: torch.Tensor, encoder: TimmEncoder) -> tuple[int, int]:
    """The grid's height and width: a feature map's own; for tokens the patch grid, else the nearest guess
    (a square, or one row) that the attention plots can still draw."""
    if features.ndim == 4:
        return tuple(features.shape[1:3]) if encoder.channels_last_output else tuple(features.shape[2:])
    tokens = features.shape[1] - encoder.prefix_tokens
    grid_size = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid_size is not None and math.prod(grid_size) == tokens:
        return int(grid_size[0]), int(grid_size[1])
    side = math.isqrt(tokens)
    return (side, side) if side * side == tokens else (1, tokens)


def describe_timm_model(name: str, model: nn.Module) -> tuple[EncoderSpec, TimmEncoder]:
    """The EncoderSpec of a created timm model, read from its pretrained config and one dummy forward pass."""
    import timm.data

    config = timm.data.resolve_model_data_config(model)
    _, height, width = config["input_size"]
    if height != width:
        raise InputError(f"features.encoder = {name!r}: takes {height}x{width} inputs; the pipeline's images "
                         "are square (resize.image_size), so choose a model with a square input size")
    encoder = TimmEncoder(name, model, height)
    with torch.inference_mode():
        features = model.forward_features(torch.zeros(1, 3, height, width))
        pooled, grid = encoder.split(features)
    if pooled.shape[-1] != grid.shape[-1]:
        raise InputError(f"features.encoder = {name!r}: pooled vector ({pooled.shape[-1]}) and grid "
                         f"({grid.shape[-1]}) differ in width; the decoders need them equal")
    spec = EncoderSpec(name, int(height), tuple(config["mean"]), tuple(config["std"]), int(pooled.shape[-1]),
                       _grid_hw(model, features, encoder), partial(_backbone, name[len(TIMM_PREFIX):]),
                       interpolation=config.get("interpolation") if config.get("interpolation") in RESAMPLING
                       else "bicubic")
    return spec, encoder


@lru_cache(maxsize=8)
def timm_encoder_spec(name: str) -> EncoderSpec:
    """The spec without any download (random weights: shapes and preprocessing do not depend on them)."""
    return describe_timm_model(name, create_timm_model(timm_model_name(name), "none"))[0]


def build_timm_encoder(name: str, weights: str) -> tuple[EncoderSpec, TimmEncoder]:
    model = create_timm_model(timm_model_name(name), weights)
    return describe_timm_model(name, model)
