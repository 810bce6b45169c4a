"""An exponential moving average of a model's weights, for the self-critical epochs.

SCST's policy gradient is noisy (a few sampled captions per image), so its weights wander from step to
step; the average over the last few hundred steps is validated and kept instead of the last step's
weights. The average does not change training: the optimizer goes on with the raw weights.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class WeightAverage:
    """`decay` per step, warmed up as min(decay, (1 + n) / (10 + n)) after n updates (so the first steps
    do not leave the average stuck at the starting weights)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        keep = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = model.state_dict()
        for key, average in self.weights.items():
            average.lerp_(current[key].detach(), 1.0 - keep)

    @contextmanager
    def applied(self, model: nn.Module):
        """The model carries the averaged weights inside the block, its own ones again after it."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.weights}
        model.load_state_dict(self.weights, strict=False)
        try:
            yield model
        finally:
            model.load_state_dict(own, strict=False)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "weights": self.weights}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = state["decay"], state["updates"]
        for key, value in state["weights"].items():
            self.weights[key].copy_(value)
