"""The epoch driver every training phase runs under: resume, checkpoints, validation, the kept epoch,
patience and logs.

A phase (cross-entropy, self-critical, vit_gpt2's fine-tuning) says how its epochs are batched, how one
optimisation step happens and how a model is validated; the driver does the rest the same way for all:
- it resumes from `state_dir` at the step where a killed run stopped (model, optimizer, scheduler, RNG
  and data position), if the checkpoint belongs to the same run (`run_id`) and, for each phase already
  entered, the same phase settings;
- it checkpoints every `checkpoint_every` steps and after every epoch (rank 0 only under torchrun);
- it keeps the weights of the epoch with the best validation score, and ends a phase after `patience`
  epochs without improvement.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from captioning.train import distributed
from captioning.train.checkpoint import load_checkpoint, save_checkpoint


@dataclass
class TrainResult:
    best_state: dict
    best_epoch: int
    epochs_run: int
    step_log: list = field(default_factory=list)     # [step, epoch, "loss" | "reward", value]
    epoch_log: list = field(default_factory=list)    # dicts per epoch
    seconds: float = 0.0

    def entry(self, epoch: int) -> dict:
        """The log entry of `epoch` (1-based); empty if it never ran. Epoch numbers skip the rest of a phase
        that patience ended, so the log's position is not the epoch number."""
        return next((e for e in self.epoch_log if e["epoch"] == epoch), {})

    def best_entry(self) -> dict:
        return self.entry(self.best_epoch) if self.best_epoch else {}


@dataclass
class RunState:
    """Where the run is and the best so far: what a checkpoint restores."""
    result: TrainResult
    epoch: int = 0            # epochs finished (all phases counted)
    batch: int = 0            # batches finished in the current epoch
    step: int = 0             # optimisation steps taken
    best_score: float = -math.inf
    stale: int = 0            # epochs since the best score improved


@dataclass
class Validation:
    score: float              # higher is better: picks the kept epoch
    log: dict                 # val_loss, val_perplexity, val_bleu_4, val_cider ... for the epoch log


class RunLog(Protocol):
    """Where the metrics go as the run goes (rank 0 only): train/live_log.py's DVCLive logger."""

    def begin(self, result: TrainResult) -> None:
        """At the start, with the history a resumed run already has."""

    def step(self, row: list) -> None: ...

    def epoch(self, entry: dict) -> None: ...


class Phase(Protocol):
    name: str                 # "xe" | "scst": the epoch log's `phase`
    label: str                # how messages name it
    epochs: int
    settings: str             # a fingerprint of the phase's own parameters

    def start(self, state: RunState) -> None:
        """Before the phase's first epoch (not when a run resumes inside the phase)."""

    def prepare(self) -> None:
        """Whenever the phase is entered, resumed into included: which parts of the model train."""

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The epoch's batches, in their seeded order; also puts the model in training mode."""

    def step(self, batch: np.ndarray, epoch: int) -> dict[str, float]:
        """One optimisation step on `batch`; returns what to log: {"loss": ...} or {"reward": ...}."""

    def validate(self, epoch: int) -> Validation: ...


@dataclass
class Optimisation:
    """Adam (or AdamW), its schedule, the float16 loss scaler and gradient clipping: one update from a loss."""
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    grad_clip: float
    model: nn.Module          # whose parameters are clipped

    def update(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()


def make_scheduler(optimizer, schedule: str, total_steps: int):
    """`cosine`: from the optimizer's rate down to 0 over `total_steps`; `constant`."""
    if schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / max(total_steps, 1))))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)


def restart_from_best(model: nn.Module, optimisation: Optimisation, state: RunState, lr: float) -> dict:
    """A later phase begins from the kept model, with a fresh optimizer state at its own constant rate;
    returns the kept epoch's log entry (empty if none was kept)."""
    result = state.result
    model.load_state_dict(result.best_state)
    optimisation.optimizer.state.clear()
    for group in optimisation.optimizer.param_groups:
        group["lr"] = lr
    state.stale = 0
    return result.best_entry()


def phase_starts(phases: list[Phase]) -> list[int]:
    """The global epoch number each phase begins at."""
    return [sum(p.epochs for p in phases[:i]) for i in range(len(phases))]


class EpochDriver:
    def __init__(self, model: nn.Module, optimisation: Optimisation, state_dir: Path, run_id: dict[str, str],
                 patience: Optional[int], checkpoint_every: int, is_main: bool = True, log: Optional[RunLog] = None):
        self.model, self.optimisation, self.state_dir, self.run_id = model, optimisation, Path(state_dir), run_id
        self.patience, self.checkpoint_every = patience, checkpoint_every
        self.is_main, self.log = is_main, log if is_main else None

    def run(self, phases: list[Phase]) -> TrainResult:
        state = self._resume(phases)
        if self.log:
            self.log.begin(state.result)
        self._started, self._settings = time.perf_counter(), {p.name: p.settings for p in phases}
        for phase, first in zip(phases, phase_starts(phases)):
            end = first + phase.epochs
            if state.epoch >= end:
                continue
            if state.epoch < first:               # the phase before stopped early (patience)
                state.epoch, state.batch = first, 0
            phase.prepare()
            if (state.epoch, state.batch) == (first, 0):
                phase.start(state)
            while state.epoch < end and not (self.patience and state.stale >= self.patience):
                self._epoch(phase, state, sum(p.epochs for p in phases))
        state.result.seconds += time.perf_counter() - self._started
        return state.result

    def _epoch(self, phase: Phase, state: RunState, total_epochs: int) -> None:
        batches = phase.epoch_batches(state.epoch)
        progress = tqdm(batches[state.batch:], desc=f"{phase.label} epoch {state.epoch + 1}/{total_epochs}",
                        unit="batch", initial=state.batch, total=len(batches), mininterval=2, leave=False)
        for b, idx in enumerate(progress, start=state.batch):
            logged = phase.step(idx, state.epoch)
            state.step += 1
            for name, value in logged.items():
                row = [state.step, state.epoch + 1, name, round(value, 5)]
                state.result.step_log.append(row)
                if self.log:
                    self.log.step(row)
            progress.set_postfix({k: f"{v:.3f}" for k, v in logged.items()}, refresh=False)
            if state.step % self.checkpoint_every == 0 and b + 1 < len(batches):
                state.batch = b + 1
                self._checkpoint(state)
        progress.close()
        self._end_epoch(phase, state)

    def _end_epoch(self, phase: Phase, state: RunState) -> None:
        result, epoch = state.result, state.epoch
        validation = phase.validate(epoch)
        improved = distributed.from_main(validation.score) > state.best_score
        if improved:
            result.best_state, result.best_epoch = copy.deepcopy(self.model.state_dict()), epoch + 1
            state.best_score, state.stale = validation.score, 0
        else:
            state.stale += 1
        result.epoch_log.append({"epoch": epoch + 1, "step": state.step, "phase": phase.name,
                                 "train_loss": _epoch_mean(result.step_log, epoch + 1, "loss"),
                                 "train_reward": _epoch_mean(result.step_log, epoch + 1, "reward"),
                                 **validation.log, "lr": self.optimisation.optimizer.param_groups[0]["lr"]})
        print(epoch_summary(result.epoch_log[-1]))
        state.epoch, state.batch = epoch + 1, 0
        result.epochs_run = len(result.epoch_log)     # epochs trained: patience skips numbers
        self._checkpoint(state)
        if self.log:
            self.log.epoch(result.epoch_log[-1])

    def _checkpoint(self, state: RunState) -> None:
        randomness = distributed.gather_to_main(random_states())    # each rank's own streams
        if not self.is_main:
            return
        result, opt = state.result, self.optimisation
        save_checkpoint(self.state_dir, {
            "run_key": self.run_id, "phase_settings": self._settings, "epoch": state.epoch, "batch": state.batch,
            "step": state.step, "model": self.model.state_dict(), "optimizer": opt.optimizer.state_dict(),
            "scheduler": opt.scheduler.state_dict(), "scaler": opt.scaler.state_dict(), "random": randomness,
            "best_score": state.best_score,
            "stale": state.stale, "best_model": result.best_state, "best_epoch": result.best_epoch,
            "step_log": result.step_log, "epoch_log": result.epoch_log,
            "seconds": result.seconds + (time.perf_counter() - self._started)})

    def _resume(self, phases: list[Phase]) -> RunState:
        fresh = RunState(TrainResult(best_state=copy.deepcopy(self.model.state_dict()), best_epoch=0, epochs_run=0))
        saved = load_checkpoint(self.state_dir, self.run_id)
        if saved is None:
            return fresh
        for phase, first in zip(phases, phase_starts(phases)):
            entered = (saved["epoch"], saved["batch"]) > (first, 0)
            if entered and first > 0 and saved.get("phase_settings", {}).get(phase.name) != phase.settings:
                print(f"train: the checkpoint in {self.state_dir} is from other {phase.label} settings; "
                      "starting from scratch")
                return fresh
        self.model.load_state_dict(saved["model"])
        self.optimisation.optimizer.load_state_dict(saved["optimizer"])
        self.optimisation.scheduler.load_state_dict(saved["scheduler"])
        restore_random_states(saved["random"])
        if saved.get("scaler"):           # float16 loss scaling goes on at the scale it had reached
            self.optimisation.scaler.load_state_dict(saved["scaler"])
        result = TrainResult(saved["best_model"], saved["best_epoch"], len(saved["epoch_log"]), saved["step_log"],
                             saved["epoch_log"], saved["seconds"])
        total = sum(p.epochs for p in phases)
        if saved["epoch"] > total:
            print(f"train: the checkpoint in {self.state_dir} has run {saved['epoch']} epochs, more than the {total} "
                  "asked for; its best model is kept")
        else:
            print(f"train: resuming at epoch {saved['epoch'] + 1}, batch {saved['batch']} (step {saved['step']})")
        return RunState(result, saved["epoch"], saved["batch"], saved["step"], saved["best_score"], saved["stale"])


def random_states() -> dict:
    """The CPU generator and, on a GPU, every CUDA device's: dropout and SCST sampling continue the same."""
    states = {"rng": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda_rng"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(by_rank: list[dict]) -> None:
    """This rank's saved streams (rank 0's if the run had fewer ranks)."""
    rank = distributed.rank_and_world()[0]
    saved = by_rank[rank] if rank < len(by_rank) else by_rank[0]
    torch.set_rng_state(saved["rng"])
    cuda = saved.get("cuda_rng")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _epoch_mean(step_log: list, epoch: int, name: str) -> Optional[float]:
    values = [row[3] for row in step_log if row[1] == epoch and row[2] == name]
    return round(float(np.mean(values)), 5) if values else None


def epoch_summary(log: dict) -> str:
    """One line per epoch: the training loss or reward, then the validation scores."""
    parts = []
    if log.get("train_reward") is not None:
        parts.append(f"train reward (CIDEr-D) {log['train_reward']:.3f}")
    if log.get("train_loss") is not None:
        parts.append(f"train loss {log['train_loss']:.3f}")
    if log.get("val_loss") is not None:
        parts.append(f"val loss {log['val_loss']:.3f}")
    parts += [f"val BLEU-4 {log['val_bleu_4']:.3f}", f"val CIDEr {log['val_cider']:.3f}"]
    return f"epoch {log['epoch']}: " + "  ".join(parts)
