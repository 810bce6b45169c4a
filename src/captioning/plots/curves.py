"""Training curves from the train stage's DVCLive folder: loss and perplexity per step (with the
validation values at each epoch's end), and greedy validation BLEU-4 and CIDEr per epoch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from captioning.plots.figure import no_data, plt, save_png


def read_metric(live_dir: Path, name: str) -> pd.DataFrame:
    """DVCLive's history of one metric (`train/loss`, `val/cider`, ...): columns `step` and the value."""
    try:
        return pd.read_csv(Path(live_dir) / "plots" / "metrics" / f"{name}.tsv", sep="\t")
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame()


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window or window < 2:
        return values
    return np.convolve(values, np.ones(window) / window, mode="valid")


def _per_step(ax, live_dir: Path, name: str, title: str) -> bool:
    steps, val = read_metric(live_dir, f"train/{name}"), read_metric(live_dir, f"val/{name}")
    if not len(steps):
        return False
    x, y = steps["step"].to_numpy(), steps[name].to_numpy()
    window = max(1, len(steps) // 50)
    ax.plot(x, y, color="lightsteelblue", lw=0.8, label=f"{name} per step")
    smooth = _smooth(y, window)
    ax.plot(x[len(x) - len(smooth):], smooth, color="navy", lw=1.5, label=f"moving mean ({window} steps)")
    if len(val):
        ax.plot(val["step"], val[name], "o-", color="darkorange", label=f"validation {name} (epoch end)")
    ax.set_xlabel("training step")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return True


def _scores(ax, live_dir: Path) -> bool:
    epochs = read_metric(live_dir, "epoch")
    if not len(epochs):
        return False
    epoch_of = dict(zip(epochs["step"], epochs["epoch"]))
    for name, label in (("bleu_4", "validation BLEU-4"), ("cider", "validation CIDEr")):
        scores = read_metric(live_dir, f"val/{name}")
        if len(scores):
            ax.plot(scores["step"].map(epoch_of), scores[name], "o-", label=label)
    ax.set_xlabel("epoch")
    ax.set_title("greedy validation scores (toolkit scale; CIDEr may exceed 1)")
    ax.legend(fontsize=8)
    return True


def plot_training_curves(live_dir: str | Path, out_png: str | Path) -> None:
    fig, (ax_loss, ax_ppl, ax_score) = plt.subplots(1, 3, figsize=(15, 4))
    if not _per_step(ax_loss, Path(live_dir), "loss", "cross-entropy loss"):
        no_data(ax_loss)
    if _per_step(ax_ppl, Path(live_dir), "perplexity", "perplexity (log scale)"):
        ax_ppl.set_yscale("log")
    else:
        no_data(ax_ppl)
    if not _scores(ax_score, Path(live_dir)):
        no_data(ax_score)
    save_png(fig, out_png)
