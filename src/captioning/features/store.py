"""Read a split's features: pooled.npy [N, D] and grid.npy [N, H*W, C], memory-mapped; ids.json; meta.json.

The training split may also hold other views of the same images, row for row, as pooled_<view>.npy and
grid_<view>.npy: `mirrored` (features.mirror_train), `cropped` (features.crop_train) and `cropped_mirrored`
(both). The train stage shows each image in one of its views per epoch."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from captioning.io import InputError, read_json

if TYPE_CHECKING:
    from captioning.models.decoders import ImageFeatures

POOLED, GRID, IDS, META = "pooled.npy", "grid.npy", "ids.json", "meta.json"
VIEWS = ("mirrored", "cropped", "cropped_mirrored")   # the extra views, in the order training numbers them


def view_files(view: str) -> tuple[str, str]:
    return f"pooled_{view}.npy", f"grid_{view}.npy"


class FeatureStore:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        for name in (POOLED, GRID, IDS, META):
            if not (self.dir / name).exists():
                raise InputError(f"{self.dir / name}: missing; rebuild features with `dvc repro features`")
        self.meta: dict = read_json(self.dir / META)
        self.ids: list[int] = [int(i) for i in read_json(self.dir / IDS)]
        self.pooled = np.load(self.dir / POOLED, mmap_mode="r")
        self.grid = np.load(self.dir / GRID, mmap_mode="r")
        n = len(self.ids)
        if self.pooled.shape[0] != n or self.grid.shape[0] != n:
            raise InputError(f"{self.dir}: {n} ids but pooled has {self.pooled.shape[0]} rows and grid "
                             f"{self.grid.shape[0]}; rebuild with `dvc repro features`")
        self.row_of = {image_id: row for row, image_id in enumerate(self.ids)}
        self.views: dict[str, tuple[np.ndarray, np.ndarray]] = {}   # extra view name -> (pooled, grid)
        for view in VIEWS:
            pooled_name, grid_name = view_files(view)
            if not ((self.dir / pooled_name).exists() and (self.dir / grid_name).exists()):
                continue
            arrays = (np.load(self.dir / pooled_name, mmap_mode="r"), np.load(self.dir / grid_name, mmap_mode="r"))
            if any(a.shape != b.shape for a, b in zip(arrays, (self.pooled, self.grid))):
                raise InputError(f"{self.dir}: the {view} arrays' shapes {[a.shape for a in arrays]} differ from "
                                 f"the originals'; rebuild with `dvc repro features`")
            self.views[view] = arrays

    def __len__(self) -> int:
        return len(self.ids)

    def image_features(self, rows, need_grid: bool = True) -> "ImageFeatures":
        """Rows as float32 tensors (the grid only when the decoder reads it)."""
        from captioning.models.decoders import ImageFeatures

        pooled = torch.from_numpy(np.asarray(self.pooled[rows], dtype=np.float32))
        grid = torch.from_numpy(np.asarray(self.grid[rows], dtype=np.float32)) if need_grid else None
        return ImageFeatures(pooled, grid)
