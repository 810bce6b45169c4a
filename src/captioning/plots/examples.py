"""A grid of images, each with its generated caption and two reference captions."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

from PIL import Image

from captioning.plots.figure import no_data, plt, save_png


def plot_examples(items: list[dict], out_png: str | Path, columns: int = 4) -> None:
    """items: {"image_path", "generated", "references": [...]}."""
    if not items:
        fig, ax = plt.subplots(figsize=(4, 2))
        no_data(ax, "no examples")
        save_png(fig, out_png)
        return
    rows = math.ceil(len(items) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.4 * columns, 6.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, item in zip(axes.flat, items):
        with Image.open(item["image_path"]) as image:
            ax.imshow(image.convert("RGB"))
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])
        refs = "\n".join(textwrap.fill(f"ref: {r}", 46) for r in item["references"][:2])
        ax.set_title(textwrap.fill(item["generated"] or "(empty)", 40), fontsize=10, fontweight="bold", loc="left")
        ax.set_xlabel(refs, fontsize=8, color="dimgray", loc="left")
    fig.suptitle("generated caption (bold) and two reference captions", fontsize=12)
    fig.tight_layout()
    save_png(fig, out_png)
