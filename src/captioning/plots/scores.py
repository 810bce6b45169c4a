"""Distributions of per-image scores (histogram with a density curve), as the ResNet-18 report shows."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from captioning.plots.figure import no_data, plt, save_png

METRICS = (("bleu_4", "BLEU-4"), ("meteor", "METEOR"), ("rouge_l", "ROUGE-L"), ("cider", "CIDEr"))


def gaussian_density(values: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """A Gaussian kernel density estimate at `xs`, bandwidth by Scott's rule (as scipy's gaussian_kde)."""
    width = values.std(ddof=1) * len(values) ** -0.2
    z = (xs[:, None] - values[None, :]) / width
    return np.exp(-0.5 * z**2).mean(axis=1) / (width * np.sqrt(2 * np.pi))


def plot_score_distributions(per_image_csv: str | Path, out_png: str | Path) -> None:
    try:
        table = pd.read_csv(per_image_csv)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        table = pd.DataFrame()
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, (col, name) in zip(axes, METRICS):
        values = table[col].dropna().to_numpy(dtype=float) if col in table else np.array([])
        if len(values) == 0:
            no_data(ax, f"{name}: no data")
            continue
        ax.hist(values, bins=min(30, max(5, len(values) // 5)), density=True, color="lightsteelblue", edgecolor="white")
        if len(values) > 2 and values.std() > 0:
            xs = np.linspace(values.min(), values.max(), 200)
            ax.plot(xs, gaussian_density(values, xs), color="navy")
        ax.axvline(values.mean(), color="darkorange", ls="--", label=f"mean {values.mean():.3f}")
        ax.set_title(f"{name} per image (n={len(values)})")
        ax.set_xlabel("score (toolkit scale)")
        ax.legend(fontsize=8)
    save_png(fig, out_png)
