"""Show and Tell (Vinyals et al. 2015): the image vector is the LSTM's first input (the course report's model)."""
from __future__ import annotations

import torch
from torch import nn

from captioning.models.decoders.base import Decoder, DecoderConfig, ImageFeatures, State


class ShowTellDecoder(Decoder):
    def __init__(self, config: DecoderConfig):
        super().__init__(config)
        c = config
        self.image_embed = nn.Linear(c.pooled_dim, c.embed_dim)
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim)
        self.lstm = nn.LSTM(c.embed_dim, c.hidden_dim, c.num_layers, batch_first=True,
                            dropout=c.dropout if c.num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(c.dropout)
        self.out = nn.Linear(c.hidden_dim, c.vocab_size)

    def forward(self, features: ImageFeatures, inputs: torch.Tensor) -> torch.Tensor:
        features = features.per_caption()
        image = self.image_embed(features.pooled).unsqueeze(1)            # [B, 1, E]
        words = self.dropout(self.embed(inputs))                           # [B, T, E]
        hidden, _ = self.lstm(torch.cat([image, words], dim=1))            # [B, T+1, H]
        return self.out(self.dropout(hidden[:, 1:]))                       # drop the image step's output

    def init_state(self, features: ImageFeatures) -> State:
        image = self.image_embed(features.pooled).unsqueeze(1)
        _, (h, c) = self.lstm(image)
        return {"h": h.transpose(0, 1).contiguous(), "c": c.transpose(0, 1).contiguous()}  # batch first

    def step(self, tokens: torch.Tensor, state: State):
        x = self.embed(tokens).unsqueeze(1)
        hc = (state["h"].transpose(0, 1).contiguous(), state["c"].transpose(0, 1).contiguous())
        out, (h, c) = self.lstm(x, hc)
        logits = self.out(out[:, 0])
        return logits, {"h": h.transpose(0, 1), "c": c.transpose(0, 1)}, None
