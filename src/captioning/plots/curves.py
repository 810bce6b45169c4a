"""Training curves: loss and perplexity per step, train/validation loss and validation scores per epoch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from captioning.plots.figure import no_data, plt, save_png


def _read(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep="\t")
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame()


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window or window < 2:
        return values
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot_training_curves(step_log_tsv: str | Path, epoch_log_tsv: str | Path, out_png: str | Path) -> None:
    steps, epochs = _read(Path(step_log_tsv)), _read(Path(epoch_log_tsv))
    fig, (ax_loss, ax_ppl, ax_score) = plt.subplots(1, 3, figsize=(15, 4))
    if len(steps):
        window = max(1, len(steps) // 50)
        x = steps["step"].to_numpy()
        for ax, col in ((ax_loss, "loss"), (ax_ppl, "perplexity")):
            ax.plot(x, steps[col], color="lightsteelblue", lw=0.8, label=f"{col} per step")
            smooth = _smooth(steps[col].to_numpy(), window)
            ax.plot(x[len(x) - len(smooth):], smooth, color="navy", lw=1.5, label=f"moving mean ({window} steps)")
        steps_per_epoch = steps.groupby("epoch")["step"].max()
        if len(epochs):
            ax_loss.plot(steps_per_epoch.reindex(epochs["epoch"]).to_numpy(), epochs["val_loss"], "o-",
                         color="darkorange", label="validation loss (epoch end)")
            ax_ppl.plot(steps_per_epoch.reindex(epochs["epoch"]).to_numpy(), epochs["val_perplexity"], "o-",
                        color="darkorange", label="validation perplexity")
        ax_ppl.set_yscale("log")
        for ax, name in ((ax_loss, "cross-entropy loss"), (ax_ppl, "perplexity (log scale)")):
            ax.set_xlabel("training step")
            ax.set_title(name)
            ax.legend(fontsize=8)
    else:
        no_data(ax_loss)
        no_data(ax_ppl)
    score_cols = [c for c in ("val_bleu_4", "val_cider") if c in epochs]
    if len(epochs) and score_cols:
        for col in score_cols:
            ax_score.plot(epochs["epoch"], epochs[col], "o-",
                          label=col.replace("val_", "validation ").replace("_", "-"))
        ax_score.set_xlabel("epoch")
        ax_score.set_title("greedy validation scores (toolkit scale; CIDEr may exceed 1)")
        ax_score.legend(fontsize=8)
    else:
        no_data(ax_score)
    save_png(fig, out_png)
