"""Matplotlib set-up shared by the plot modules: headless backend, atomic PNG writes, empty panels."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from captioning.io import atomic_path  # noqa: E402


def save_png(fig, out_png: str | Path) -> None:
    with atomic_path(out_png, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def no_data(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])
