"""GRU whose first hidden state is the image (the ResNet-101 + GRU report)."""
from __future__ import annotations

import torch
from torch import nn

from captioning.models.decoders.base import Decoder, DecoderConfig, ImageFeatures, State


class GruInitDecoder(Decoder):
    def __init__(self, config: DecoderConfig):
        super().__init__(config)
        c = config
        self.init_hidden = nn.Linear(c.pooled_dim, c.hidden_dim * c.num_layers)
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim)
        self.gru = nn.GRU(c.embed_dim, c.hidden_dim, c.num_layers, batch_first=True,
                          dropout=c.dropout if c.num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(c.dropout)
        self.out = nn.Linear(c.hidden_dim, c.vocab_size)

    def _h0(self, features: ImageFeatures) -> torch.Tensor:  # [B, layers, H]
        c = self.config
        return torch.tanh(self.init_hidden(features.pooled)).view(-1, c.num_layers, c.hidden_dim)

    def forward(self, features: ImageFeatures, inputs: torch.Tensor) -> torch.Tensor:
        features = features.per_caption()
        h0 = self._h0(features).transpose(0, 1).contiguous()
        hidden, _ = self.gru(self.dropout(self.embed(inputs)), h0)
        return self.out(self.dropout(hidden))

    def init_state(self, features: ImageFeatures) -> State:
        return {"h": self._h0(features)}

    def step(self, tokens: torch.Tensor, state: State):
        out, h = self.gru(self.embed(tokens).unsqueeze(1), state["h"].transpose(0, 1).contiguous())
        return self.out(out[:, 0]), {"h": h.transpose(0, 1)}, None
