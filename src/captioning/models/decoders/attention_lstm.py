"""LSTMCell decoders with additive attention over the CNN grid.

`soft_attention`: Show, Attend and Tell (Xu et al. 2015): ReLU additive attention, a sigmoid gate on
the context, doubly stochastic attention regularisation, h/c initialised from the mean feature.
`bahdanau_gated`: the ResNet-18 report's variant: Bahdanau's tanh scoring, gated context and a deep
output layer reading the hidden state, the context and the word.

The image-side projection of the attention is computed once per batch (not once per step).
"""
from __future__ import annotations

import torch
from torch import nn

from captioning.models.decoders.base import Decoder, DecoderConfig, ImageFeatures, State


class AttentionLSTMDecoder(Decoder):
    needs_grid = True
    has_attention = True
    score_activation = "relu"
    deep_output = False
    doubly_stochastic = 1.0     # weight of the (1 - sum_t alpha)^2 penalty; 0 = off

    def __init__(self, config: DecoderConfig):
        super().__init__(config)
        c = config
        channels, attn = c.grid_channels, c.hidden_dim
        self.image_attn = nn.Linear(channels, attn)
        self.hidden_attn = nn.Linear(c.hidden_dim, attn)
        self.attn_score = nn.Linear(attn, 1)
        self.gate = nn.Linear(c.hidden_dim, channels)
        self.init_h = nn.Linear(channels, c.hidden_dim)
        self.init_c = nn.Linear(channels, c.hidden_dim)
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim)
        self.cell = nn.LSTMCell(c.embed_dim + channels, c.hidden_dim)
        self.dropout = nn.Dropout(c.dropout)
        if self.deep_output:
            self.out_hidden = nn.Linear(c.hidden_dim + channels + c.embed_dim, c.embed_dim)
            self.out = nn.Linear(c.embed_dim, c.vocab_size)
        else:
            self.out = nn.Linear(c.hidden_dim, c.vocab_size)
        self._aux: torch.Tensor | float = 0.0

    def _activation(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) if self.score_activation == "relu" else torch.tanh(x)

    def _start(self, grid: torch.Tensor) -> State:
        mean = grid.mean(dim=1)
        return {"grid": grid, "grid_attn": self.image_attn(grid),
                "h": torch.tanh(self.init_h(mean)), "c": torch.tanh(self.init_c(mean))}

    def _advance(self, words: torch.Tensor, state: State):
        """One step from word embeddings [B, E] -> (logits, state, alpha [B, L])."""
        h, c, grid = state["h"], state["c"], state["grid"]
        scores = self.attn_score(self._activation(state["grid_attn"] + self.hidden_attn(h).unsqueeze(1))).squeeze(2)
        alpha = torch.softmax(scores, dim=1)
        context = torch.sigmoid(self.gate(h)) * torch.bmm(alpha.unsqueeze(1), grid).squeeze(1)
        h, c = self.cell(torch.cat([words, context], dim=1), (h, c))
        if self.deep_output:
            logits = self.out(self.dropout(torch.tanh(self.out_hidden(torch.cat([h, context, words], dim=1)))))
        else:
            logits = self.out(self.dropout(h))
        return logits, {**state, "h": h, "c": c}, alpha

    def forward(self, features: ImageFeatures, inputs: torch.Tensor) -> torch.Tensor:
        state = self._start(features.grid)
        words = self.dropout(self.embed(inputs))
        logits, alphas = [], []
        for t in range(inputs.shape[1]):
            step_logits, state, alpha = self._advance(words[:, t], state)
            logits.append(step_logits)
            alphas.append(alpha)
        if self.doubly_stochastic and self.training:
            mask = (inputs != 0).unsqueeze(2).float()                  # padded steps do not count
            coverage = (torch.stack(alphas, dim=1) * mask).sum(dim=1)  # [B, L]
            self._aux = self.doubly_stochastic * ((1.0 - coverage) ** 2).mean()
        else:
            self._aux = 0.0
        return torch.stack(logits, dim=1)

    def auxiliary_loss(self):
        return self._aux

    def init_state(self, features: ImageFeatures) -> State:
        return self._start(features.grid)

    def step(self, tokens: torch.Tensor, state: State):
        return self._advance(self.embed(tokens), state)


class SoftAttentionDecoder(AttentionLSTMDecoder):
    pass


class BahdanauGatedDecoder(AttentionLSTMDecoder):
    score_activation = "tanh"
    deep_output = True
    doubly_stochastic = 0.0
