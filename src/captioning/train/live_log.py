"""Training metrics through DVCLive, written as the run goes (rank 0 only).

Per optimisation step: the training loss and perplexity (cross-entropy) or the mean CIDEr-D reward of
the sampled captions (SCST). Per epoch, at its last step: the validation loss, perplexity, BLEU-4 and
CIDEr, the learning rate and the epoch number. DVCLive's step is the optimisation step. Its metrics.json
is rewritten every few seconds, so `dvc exp show` shows a running experiment's figures; `dvc plots`
draws the TSV files under plots/metrics/.

A resumed run starts the folder afresh and first writes the history its checkpoint holds, so the step
count goes on with no step repeated or missing (the steps a killed run logged after its last checkpoint
are run, and logged, again)."""
from __future__ import annotations

import math
import time
from pathlib import Path

from captioning.train.driver import TrainResult

SYNC_SECONDS = 5.0          # how stale `dvc exp show` may be while an epoch runs
EPOCH_METRICS = {"val_loss": "val/loss", "val_perplexity": "val/perplexity", "val_bleu_4": "val/bleu_4",
                 "val_cider": "val/cider", "lr": "train/lr", "epoch": "epoch"}


class LiveLog:
    def __init__(self, directory: str | Path):
        from dvclive import Live

        # Inside `dvc repro` / `dvc exp run` the pipeline's dvc.yaml declares these files: DVCLive must not
        # write its own dvc.yaml or save an experiment of its own.
        self.live = Live(str(directory), report=None, save_dvc_exp=False, dvcyaml=None)
        self._synced = time.monotonic()

    def begin(self, result: TrainResult) -> None:
        for row in result.step_log:
            self._log_step(row)
        for entry in result.epoch_log:
            self._log_epoch(entry)
        self.live.make_summary()

    def step(self, row: list) -> None:
        self._log_step(row)
        if time.monotonic() - self._synced > SYNC_SECONDS:
            self._sync()

    def epoch(self, entry: dict) -> None:
        self._log_epoch(entry)
        self._sync()

    def _sync(self) -> None:
        self.live.make_summary()
        self._synced = time.monotonic()

    def _log_step(self, row: list) -> None:
        step, _, name, value = row
        self.live.step = step
        self.live.log_metric(f"train/{name}", value)
        if name == "loss":
            self.live.log_metric("train/perplexity", round(math.exp(min(value, 50)), 4))

    def _log_epoch(self, entry: dict) -> None:
        self.live.step = entry["step"]
        for key, name in EPOCH_METRICS.items():
            if entry.get(key) is not None:
                self.live.log_metric(name, entry[key])
