"""Attention maps: for each generated word, where the decoder looked, over the image."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from captioning.plots.figure import no_data, plt, save_png


def plot_attention(image_path: str | Path, words: Sequence[str], alphas: np.ndarray, grid_hw: tuple[int, int],
                   out_png: str | Path, columns: int = 5) -> None:
    """alphas [len(words), H*W]: the attention weights of each step (rows sum to 1)."""
    with Image.open(image_path) as image:
        image = image.convert("RGB")
    size = image.size
    panels = len(words) + 1
    rows = math.ceil(panels / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(image)
    axes.flat[0].set_title("image", fontsize=9)
    if not len(words):
        no_data(axes.flat[1], "no words")
    for k, word in enumerate(words):
        ax = axes.flat[k + 1]
        grid = np.asarray(alphas[k], dtype=np.float32).reshape(grid_hw)
        heat = Image.fromarray((grid / max(grid.max(), 1e-8) * 255).astype(np.uint8)).resize(size, Image.BICUBIC)
        ax.imshow(image)
        ax.imshow(np.asarray(heat), cmap="jet", alpha=0.45)
        ax.set_title(word, fontsize=10)
    save_png(fig, out_png)
