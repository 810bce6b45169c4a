"""What a training run leaves besides the model: per-step and per-epoch TSV logs (for `dvc plots`) and the
summary in metrics/train.json."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from captioning.io import atomic_write_text
from captioning.train.driver import TrainResult


def _tsv(rows: list, header: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def write_logs(result: TrainResult, plots_dir: Path) -> None:
    atomic_write_text(plots_dir / "steps.tsv", _tsv(result.step_log, ["step", "epoch", "loss", "perplexity"]))
    header = list(dict.fromkeys(k for e in result.epoch_log for k in e)) or ["epoch"]
    atomic_write_text(plots_dir / "epochs.tsv", _tsv([[e.get(h) for h in header] for e in result.epoch_log], header))


def _last(result: TrainResult, key: str):
    return next((e[key] for e in reversed(result.epoch_log) if e.get(key) is not None), None)


def training_summary(result: TrainResult, device, captions: int, parameters: int, **extra) -> dict:
    """metrics/train.json: epochs run, the kept epoch and its validation scores, time."""
    best = result.epoch_log[result.best_epoch - 1] if result.best_epoch else {}
    return {"epochs": result.epochs_run, "best_epoch": result.best_epoch, "device": str(device),
            "train_seconds": round(result.seconds, 1),
            "seconds_per_epoch": round(result.seconds / max(result.epochs_run, 1), 1),
            "final_train_loss": _last(result, "train_loss"), "final_train_reward": _last(result, "train_reward"),
            "best_val_loss": best.get("val_loss"), "best_val_bleu_4": best.get("val_bleu_4"),
            "best_val_cider": best.get("val_cider"), "captions": captions, "parameters": parameters, **extra}
