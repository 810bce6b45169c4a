"""The one interface every decoder family shares.

Training uses teacher forcing (`forward`); decoding uses `init_state` + `step`, one token at a time,
so greedy and beam search work for every family. A state is a dict of tensors whose first dimension
is the batch (beam search reorders it with `select`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from captioning.text.vocabulary import Vocabulary

State = dict[str, torch.Tensor]

# Tokens no sampler may emit: <pad> and <start> are not words (a caption would silently lose them, and
# <pad> reads as its end), and a captioner should never write <unk>. <end> stays: it ends a caption.
NEVER_GENERATED = (Vocabulary.pad_id, Vocabulary.start_id, Vocabulary.unk_id)


def forbid_special_tokens(logits: torch.Tensor) -> torch.Tensor:
    """`logits` [..., V] with NEVER_GENERATED at -inf, so softmax, sampling, argmax and beams skip them.

    Every sampler (greedy, beam search, SCST sampling) uses this one mask, so they decode the same
    distribution; its log-softmax renormalises over the words a caption may contain."""
    forbidden = torch.tensor(NEVER_GENERATED, device=logits.device)
    return logits.index_fill(-1, forbidden, float("-inf"))


@dataclass
class ImageFeatures:
    pooled: torch.Tensor                   # [N, D]
    grid: Optional[torch.Tensor] = None    # [N, L, C] (L = H*W), only for decoders that need it
    # Training batches hold several captions per image: the features are then one row per image and
    # `index` [B] names each caption's row, so decoders do their per-image work once per image.
    index: Optional[torch.Tensor] = None

    def select(self, index: torch.Tensor) -> "ImageFeatures":
        return ImageFeatures(self.pooled[index], None if self.grid is None else self.grid[index])

    def per_caption(self) -> "ImageFeatures":
        """One row per caption (for decoders whose per-image work is too cheap to share)."""
        return self if self.index is None else self.select(self.index)

    def to(self, device) -> "ImageFeatures":
        to_gpu = torch.device(device).type == "cuda"

        def move(t):
            if t is None:
                return None
            if to_gpu and t.device.type == "cpu":     # pinned pages: the copy overlaps the GPU's work
                return t.pin_memory().to(device, non_blocking=True)
            return t.to(device)
        return ImageFeatures(move(self.pooled), move(self.grid), move(self.index))

    def zeros_like(self) -> "ImageFeatures":
        return ImageFeatures(torch.zeros_like(self.pooled), None if self.grid is None else torch.zeros_like(self.grid),
                             self.index)


@dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int
    pooled_dim: int
    grid_channels: int = 0
    embed_dim: int = 256
    hidden_dim: int = 512
    num_layers: int = 1
    dropout: float = 0.5


def lstm_update(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.LSTMCell's update from precomputed gates (i, f, g, o) -> (h, c), in float32 under bf16 autocast too."""
    i, f, g, o = gates.float().chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def worth_cutting(live: int, rows: int) -> bool:
    """Whether a shrinking batch of `rows` rows, `live` of them still running, drops its ended rows now: in
    a few large cuts (a quarter ended), since every cut costs a copy of the state and a zero-padded
    gradient in backward, and cutting at every step would cost more than it saves."""
    return live < 0.75 * rows


def longest_first(inputs: torch.Tensor, index: Optional[torch.Tensor]):
    """For a shrinking batch: the captions' order longest first (padding is id 0), each sorted caption's
    image row (`index` maps captions to image rows; None = one row per caption), and how many captions
    are still running at each step."""
    lengths = (inputs != 0).sum(dim=1)
    order = torch.argsort(lengths, descending=True, stable=True)
    rows = order if index is None else index[order]
    active = [int(n) for n in (lengths[order].cpu()[None, :] > torch.arange(inputs.shape[1])[:, None]).sum(dim=1)]
    return order, rows, active


class Decoder(nn.Module):
    needs_grid: bool = False       # whether the decoder reads the spatial grid (else only the pooled vector)
    has_attention: bool = False    # whether `step` returns attention weights over the grid
    shares_image_work: bool = False  # whether `forward` accepts per-image features with a caption index

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = config

    def forward(self, features: ImageFeatures, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher forcing. inputs [B, T] start with <start>; returns logits [B, T, V] for the next tokens."""
        raise NotImplementedError

    def init_state(self, features: ImageFeatures) -> State:
        raise NotImplementedError

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State, Optional[torch.Tensor]]:
        """One token per sequence [B] -> (logits [B, V], new state, attention [B, L] or None)."""
        raise NotImplementedError

    def auxiliary_loss(self) -> torch.Tensor | float:
        """Extra training loss from the last `forward` (e.g. doubly stochastic attention); 0 by default."""
        return 0.0

    @staticmethod
    def select(state: State, index: torch.Tensor) -> State:
        return {k: v[index] for k, v in state.items()}
