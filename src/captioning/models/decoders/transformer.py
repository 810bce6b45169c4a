"""A small transformer decoder over the CNN grid, trained from scratch (the offline stand-in for ViT-GPT2)."""
from __future__ import annotations

import torch
from torch import nn

from captioning.models.decoders.base import Decoder, DecoderConfig, ImageFeatures, State

MAX_POSITIONS = 64


class TransformerCaptionDecoder(Decoder):
    needs_grid = True
    shares_image_work = True

    def __init__(self, config: DecoderConfig):
        super().__init__(config)
        c = config
        d = c.embed_dim
        heads = next(h for h in (8, 4, 2, 1) if d % h == 0)
        self.memory_proj = nn.Sequential(nn.Linear(c.grid_channels, d), nn.LayerNorm(d))
        self.embed = nn.Embedding(c.vocab_size, d)
        self.position = nn.Embedding(MAX_POSITIONS, d)
        layer = nn.TransformerDecoderLayer(d, heads, dim_feedforward=c.hidden_dim, dropout=min(c.dropout, 0.3),
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, c.num_layers)
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, c.vocab_size)

    def _decode(self, memory: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        t = inputs.shape[1]
        if t > MAX_POSITIONS:
            raise ValueError(f"transformer decoder handles at most {MAX_POSITIONS} tokens, got {t}")
        x = self.embed(inputs) + self.position(torch.arange(t, device=inputs.device))
        causal = torch.triu(torch.full((t, t), float("-inf"), device=inputs.device), diagonal=1)
        return self.out(self.norm(self.layers(x, memory, tgt_mask=causal)))

    def forward(self, features: ImageFeatures, inputs: torch.Tensor) -> torch.Tensor:
        memory = self.memory_proj(features.grid)                  # once per image
        return self._decode(memory if features.index is None else memory[features.index], inputs)

    def init_state(self, features: ImageFeatures) -> State:
        memory = self.memory_proj(features.grid)
        return {"memory": memory, "tokens": torch.empty((memory.shape[0], 0), dtype=torch.long, device=memory.device)}

    def step(self, tokens: torch.Tensor, state: State):
        # No key/value cache: captions are short, and re-running the prefix keeps one code path.
        seq = torch.cat([state["tokens"], tokens.unsqueeze(1)], dim=1)
        logits = self._decode(state["memory"], seq)[:, -1]
        return logits, {"memory": state["memory"], "tokens": seq}, None
