"""Random crops of cached feature grids: an augmentation that costs no feature extraction.

Self-critical training on one fixed feature grid per photograph learns its training references by
heart; a random side x side window of the H x W grid per image and step is a cropped view of the
photograph (each cell's receptive field still sees past the window, so it is a milder crop than
cutting the image). Decoders attend over any number of positions, so training on windows and
decoding on the whole grid need no change to the model.
"""
from __future__ import annotations

import math

import torch

from captioning.models.decoders import ImageFeatures


def grid_side(positions: int) -> int:
    """The side of a square grid of `positions` cells (ValueError when it is not square)."""
    side = math.isqrt(positions)
    if side * side != positions:
        raise ValueError(f"a feature grid of {positions} cells is not square")
    return side


def random_grid_crops(feats: ImageFeatures, side: int) -> ImageFeatures:
    """Each image's grid cut to a random side x side window (torch's seeded generator); its pooled vector
    becomes the window's mean. A window as large as the grid leaves the features as they are."""
    n, positions, channels = feats.grid.shape
    full = grid_side(positions)
    if side >= full:
        return feats
    top = torch.randint(0, full - side + 1, (n, 1, 1))
    left = torch.randint(0, full - side + 1, (n, 1, 1))
    offsets = torch.arange(side)
    cells = ((top + offsets[None, :, None]) * full + left + offsets[None, None, :]).reshape(n, side * side)
    cells = cells.to(feats.grid.device)
    grid = feats.grid.gather(1, cells[:, :, None].expand(-1, -1, channels))
    return ImageFeatures(grid.mean(dim=1).to(feats.pooled.dtype), grid, feats.index)
