"""LSTM whose initial hidden and cell states are the image (the Inception-v3 + 2-layer LSTM report's baseline).

Unlike Show and Tell, where the image is the first input and the state starts at zero, every layer's
(h, c) here starts from a projection of the pooled image vector, and the inputs are words only.
"""
from __future__ import annotations

import torch
from torch import nn

from captioning.models.decoders.base import Decoder, DecoderConfig, ImageFeatures, State


class LstmInitDecoder(Decoder):
    def __init__(self, config: DecoderConfig):
        super().__init__(config)
        c = config
        self.init_h = nn.Linear(c.pooled_dim, c.hidden_dim * c.num_layers)
        self.init_c = nn.Linear(c.pooled_dim, c.hidden_dim * c.num_layers)
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim)
        self.lstm = nn.LSTM(c.embed_dim, c.hidden_dim, c.num_layers, batch_first=True,
                            dropout=c.dropout if c.num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(c.dropout)
        self.out = nn.Linear(c.hidden_dim, c.vocab_size)

    def _initial(self, features: ImageFeatures) -> tuple[torch.Tensor, torch.Tensor]:  # [B, layers, H] each
        c = self.config
        shape = (-1, c.num_layers, c.hidden_dim)
        return (torch.tanh(self.init_h(features.pooled)).view(shape),
                torch.tanh(self.init_c(features.pooled)).view(shape))

    def forward(self, features: ImageFeatures, inputs: torch.Tensor) -> torch.Tensor:
        h0, c0 = self._initial(features.per_caption())
        hc = (h0.transpose(0, 1).contiguous(), c0.transpose(0, 1).contiguous())
        hidden, _ = self.lstm(self.dropout(self.embed(inputs)), hc)
        return self.out(self.dropout(hidden))

    def init_state(self, features: ImageFeatures) -> State:
        h, c = self._initial(features)
        return {"h": h, "c": c}

    def step(self, tokens: torch.Tensor, state: State):
        hc = (state["h"].transpose(0, 1).contiguous(), state["c"].transpose(0, 1).contiguous())
        out, (h, c) = self.lstm(self.embed(tokens).unsqueeze(1), hc)
        return self.out(out[:, 0]), {"h": h.transpose(0, 1), "c": c.transpose(0, 1)}, None
