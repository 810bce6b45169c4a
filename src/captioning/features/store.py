"""Read a split's features: pooled.npy [N, D] and grid.npy [N, H*W, C], memory-mapped; ids.json; meta.json."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from captioning.io import InputError, read_json

POOLED, GRID, IDS, META = "pooled.npy", "grid.npy", "ids.json", "meta.json"


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

    def __len__(self) -> int:
        return len(self.ids)
