"""The summary a training run leaves in metrics/train.json."""
from __future__ import annotations

import torch

from captioning.train.device import precision_name, processor_name
from captioning.train.driver import TrainResult


def _last(result: TrainResult, key: str):
    return next((e[key] for e in reversed(result.epoch_log) if e.get(key) is not None), None)


def training_summary(result: TrainResult, device, amp_dtype, captions: int, parameters: int, **extra) -> dict:
    """metrics/train.json: epochs run, the kept epoch and its validation scores, time, and what a rerun needs
    to give the same bits: the training precision, the processor and the CPU threads (README: Reproducibility)."""
    best = result.best_entry()
    return {"epochs": result.epochs_run, "best_epoch": result.best_epoch, "device": str(device),
            "precision": precision_name(amp_dtype), "processor": processor_name(device),
            "cpu_threads": torch.get_num_threads(),
            "train_seconds": round(result.seconds, 1),
            "seconds_per_epoch": round(result.seconds / max(result.epochs_run, 1), 1),
            "final_train_loss": _last(result, "train_loss"), "final_train_reward": _last(result, "train_reward"),
            "best_val_loss": best.get("val_loss"), "best_val_bleu_4": best.get("val_bleu_4"),
            "best_val_cider": best.get("val_cider"), "captions": captions, "parameters": parameters, **extra}


# Facts of one run, not of the model: kept out of the model folder so that identical training gives an
# identical `models` output (and DVC does not rerun decode, plot and export for a retrain with the same bits).
RUN_FACTS = ("train_seconds", "seconds_per_epoch")


def model_record(summary: dict) -> dict:
    """The training summary as the model's config.json keeps it: without the run's timings."""
    return {k: v for k, v in summary.items() if k not in RUN_FACTS}
