"""Extract CNN features of a folder of images into a memory-mapped float16 store.

JPEG decoding and preprocessing run in a DataLoader worker, overlapped with the CNN forward on the
main process; outputs are written to temporary names and renamed, so a killed run leaves nothing.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from captioning.features.store import GRID, IDS, META, MIRRORED_GRID, MIRRORED_POOLED, POOLED
from captioning.io import atomic_path, atomic_write_json, file_digest
from captioning.models.encoders import EncoderSpec, build_encoder
from captioning.train.device import autocast_context, pick_device, set_cpu_threads


class ImageFolder(Dataset):
    """The images of `ids` as encoder inputs, optionally mirrored left-right."""

    def __init__(self, folder: Path, ids: list[int], spec: EncoderSpec, mirror: bool = False):
        self.folder, self.ids, self.spec, self.mirror = Path(folder), ids, spec, mirror

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.folder / f"{self.ids[i]}.jpg") as image:
            if self.mirror:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            return self.spec.preprocess(image)


def _quiet_worker(_: int) -> None:
    torch.set_num_threads(1)   # decoding needs one core; more threads only fight the CNN for the CPU


def _finite_float16(x: torch.Tensor, encoder_name: str) -> torch.Tensor:
    """Values float16 can store. Only an untrained deep encoder (`features.weights: none`) gets here with
    activations past float16's range; say so rather than write inf/NaN that would poison training."""
    x = x.float()
    if not bool(torch.isfinite(x).all()) or float(x.abs().max()) > 65504:
        print(f"features: {encoder_name} gives values beyond float16's range (untrained weights?); clamped")
        x = torch.nan_to_num(x, nan=0.0, posinf=65504.0, neginf=-65504.0).clamp(-65504.0, 65504.0)
    return x


def _optimise_for_cpu(encoder: torch.nn.Module, spec: EncoderSpec, batch_size: int) -> torch.nn.Module:
    """Trace and freeze: BatchNorm folds into the convolutions and oneDNN fuses the activations.

    Faster than eager mode on a CPU (bench/feature_extraction.py compares the two).
    Any failure keeps the eager module: slower, same numbers.
    """
    example = torch.zeros(min(batch_size, 2), 3, spec.input_size, spec.input_size).contiguous(
        memory_format=torch.channels_last)
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.freeze(torch.jit.trace(encoder, example))
    except Exception as e:  # pragma: no cover - depends on the torch build
        print(f"features: tracing failed ({e}); using eager mode")
        return encoder


def _warn_if_upsampled(first_image: Path, spec: EncoderSpec) -> None:
    """Images smaller than the encoder's input are blown up before the CNN sees them: blurrier inputs for
    the same cost (Flickr8k at 224 px into efficientnet_lite2's 260, for one). Said, not refused."""
    with Image.open(first_image) as image:
        side = min(image.size)
    if side < spec.input_size:
        print(f"features: {first_image.parent} holds {image.size[0]}x{image.size[1]} images; {spec.name} takes "
              f"{spec.input_size}x{spec.input_size}, so they are upsampled (resize.image_size={spec.input_size} "
              "avoids it)")


def extract_split(image_dir: Path, image_ids: list[int], out_dir: Path, encoder_name: str, weights: str,
                  batch_size: int, device: str = "auto", workers: int | None = None, optimise: bool = True,
                  mirror: bool = False) -> dict:
    """Features of `image_ids`; with `mirror`, also of their left-right mirror images (a second pair of
    arrays, row for row: training augmentation)."""
    set_cpu_threads()
    dev = pick_device(device)
    spec, encoder = build_encoder(encoder_name, weights)
    encoder = encoder.to(dev, memory_format=torch.channels_last)
    if dev.type == "cpu" and optimise:
        encoder = _optimise_for_cpu(encoder, spec, batch_size)
    if image_ids:
        _warn_if_upsampled(Path(image_dir) / f"{image_ids[0]}.jpg", spec)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # An earlier run's mirrors go first: a run killed between the two passes must not leave new
    # originals beside old mirrors, and a store without mirrors must not keep them.
    for name in (MIRRORED_POOLED, MIRRORED_GRID):
        (out_dir / name).unlink(missing_ok=True)
    num_workers = (1 if workers is None else workers) if image_ids else 0
    views = [(False, POOLED, GRID)] + ([(True, MIRRORED_POOLED, MIRRORED_GRID)] if mirror else [])
    for flipped, pooled_name, grid_name in views:
        loader = DataLoader(ImageFolder(image_dir, list(image_ids), spec, flipped), batch_size=batch_size,
                            num_workers=num_workers, pin_memory=dev.type == "cuda", worker_init_fn=_quiet_worker)
        label = f"features {out_dir.name}{' mirrored' if flipped else ''}"
        _write_arrays(encoder, loader, dev, spec, encoder_name, out_dir / pooled_name, out_dir / grid_name, label)
    (h, w), d = spec.grid_hw, spec.pooled_dim
    atomic_write_json(out_dir / IDS, [int(i) for i in image_ids], indent=None)
    written = [IDS] + [name for _, *names in views for name in names]
    meta = {"encoder": encoder_name, "weights": weights, "pooled_dim": d, "grid_shape": [h, w, d],
            "dtype": "float16", "count": len(image_ids), "input_size": spec.input_size, "mirrored": mirror,
            # what the train stage's resume key reads instead of rehashing gigabytes on every run
            "content_digest": {name: file_digest(out_dir / name) for name in written}}
    atomic_write_json(out_dir / META, meta)
    return meta


def _write_arrays(encoder, loader: DataLoader, dev: torch.device, spec: EncoderSpec, encoder_name: str,
                  pooled_path: Path, grid_path: Path, label: str) -> None:
    n, (h, w), d = len(loader.dataset), spec.grid_hw, spec.pooled_dim
    with atomic_path(pooled_path, ".npy") as pooled_tmp, atomic_path(grid_path, ".npy") as grid_tmp:
        pooled = np.lib.format.open_memmap(pooled_tmp, mode="w+", dtype=np.float16, shape=(n, d))
        grid = np.lib.format.open_memmap(grid_tmp, mode="w+", dtype=np.float16, shape=(n, h * w, d))
        row = 0
        with torch.inference_mode(), autocast_context(dev, torch.float16 if dev.type == "cuda" else None):
            for images in tqdm(loader, desc=label, unit="batch", mininterval=2):
                images = images.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
                p, g = encoder(images)
                p, g = _finite_float16(p, encoder_name), _finite_float16(g, encoder_name)
                pooled[row:row + len(images)] = p.float().cpu().numpy()
                grid[row:row + len(images)] = g.float().cpu().numpy()
                row += len(images)
        pooled.flush()
        grid.flush()
        del pooled, grid
