"""Read a split's features: pooled.npy [N, D] and grid.npy [N, H*W, C], memory-mapped; ids.json; meta.json.

With `features.mirror_train`, the training split also holds pooled_mirrored.npy and grid_mirrored.npy: the
same images mirrored left-right, row for row (the train stage shows each image or its mirror)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from captioning.io import InputError, read_json

POOLED, GRID, IDS, META = "pooled.npy", "grid.npy", "ids.json", "meta.json"
MIRRORED_POOLED, MIRRORED_GRID = "pooled_mirrored.npy", "grid_mirrored.npy"


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
        self.mirrored: tuple[np.ndarray, np.ndarray] | None = None     # (pooled, grid) of the mirror images
        if (self.dir / MIRRORED_POOLED).exists() and (self.dir / MIRRORED_GRID).exists():
            mirrored = (np.load(self.dir / MIRRORED_POOLED, mmap_mode="r"),
                        np.load(self.dir / MIRRORED_GRID, mmap_mode="r"))
            if any(a.shape != b.shape for a, b in zip(mirrored, (self.pooled, self.grid))):
                raise InputError(f"{self.dir}: the mirrored arrays' shapes {[a.shape for a in mirrored]} differ from "
                                 f"the originals'; rebuild with `dvc repro features`")
            self.mirrored = mirrored

    def __len__(self) -> int:
        return len(self.ids)

    def tensors(self, rows, need_grid: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(pooled, grid) of `rows` as float32 tensors (the grid only when the decoder reads it)."""
        pooled = torch.from_numpy(np.asarray(self.pooled[rows], dtype=np.float32))
        grid = torch.from_numpy(np.asarray(self.grid[rows], dtype=np.float32)) if need_grid else None
        return pooled, grid
