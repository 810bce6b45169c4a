"""LSTMCell decoders with additive attention over the CNN grid.

`soft_attention`: Show, Attend and Tell (Xu et al. 2015): ReLU additive attention, a sigmoid gate on
the context, doubly stochastic attention regularisation, h/c initialised from the mean feature.
`bahdanau_gated`: the ResNet-18 report's variant: Bahdanau's tanh scoring, gated context and a deep
output layer reading the hidden state, the context and the word.

Speed on CPU (bench/attention_training.py): the grid is projected to the hidden width once per image
(not once per caption or per step), the word half of the LSTM input and the output layer run as one
matrix product over all steps, and the batch shrinks as captions end (sorted by length, as the
best-known tutorial does), so no step is spent on padding. Each step's products run on StepWeights
(step_weights.py: the three that read h as one, weight gradients formed once after all steps), and the
attention itself in fused kernels (fused_attention.py), on each row's image, never on copies of the grid.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from captioning.models.decoders.base import (
    Decoder,
    DecoderConfig,
    ImageFeatures,
    State,
    longest_first,
    lstm_update,
    worth_cutting,
)
from captioning.models.decoders.fused_attention import additive_scores, attention_context, fuses
from captioning.models.decoders.step_weights import StepWeight


class AttentionLSTMDecoder(Decoder):
    needs_grid = True
    has_attention = True
    score_activation = "relu"
    deep_output = False
    doubly_stochastic = 1.0     # weight of the (1 - sum_t alpha)^2 penalty; 0 = off
    shares_image_work = True

    def __init__(self, config: DecoderConfig):
        super().__init__(config)
        c = config
        channels, attn = c.grid_channels, c.hidden_dim
        # The context is a linear map of the grid, so projecting the grid first (once per image) and
        # attending over the projection gives the same family of models with a 1280 -> 512 narrower LSTM input.
        context = c.hidden_dim
        self.project = nn.Linear(channels, context)
        self.image_attn = nn.Linear(context, attn)
        self.hidden_attn = nn.Linear(c.hidden_dim, attn)
        self.attn_score = nn.Linear(attn, 1)
        self.gate = nn.Linear(c.hidden_dim, context)
        self.init_h = nn.Linear(channels, c.hidden_dim)
        self.init_c = nn.Linear(channels, c.hidden_dim)
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim)
        self.cell = nn.LSTMCell(c.embed_dim + context, c.hidden_dim)
        self.dropout = nn.Dropout(c.dropout)
        if self.deep_output:
            self.out_hidden = nn.Linear(c.hidden_dim + context + c.embed_dim, c.embed_dim)
            self.out = nn.Linear(c.embed_dim, c.vocab_size)
        else:
            self.out = nn.Linear(c.hidden_dim, c.vocab_size)
        self._aux: torch.Tensor | float = 0.0

    def _start(self, grid: torch.Tensor, rows: torch.Tensor | None = None, stepwise: bool = True) -> State:
        """The per-image work, then (when `rows` is given) one state row per caption. Where the fused
        kernels run, the grid stays one row per image (in float32, what they read) and `image_rows` names
        each state row's image: sampling 5 captions per image or 3 beams does not copy the grid."""
        projected = self.project(grid)
        mean = grid.mean(dim=1)
        state = {"grid": projected, "grid_attn": self.image_attn(projected), "weights": self._step_weights(stepwise),
                 "h": torch.tanh(self.init_h(mean)), "c": torch.tanh(self.init_c(mean))}
        if fuses(grid.device):
            state.update(grid=projected.float(), grid_attn=state["grid_attn"].float(),
                         image_rows=torch.arange(grid.shape[0]))
        return state if rows is None else self.select(state, rows)

    @staticmethod
    def select(state: State, index: torch.Tensor) -> State:
        """The state's rows by `index`; the step weights whole, and the grid too where `image_rows` names each
        row's image."""
        whole = {"weights", "grid", "grid_attn"} if "image_rows" in state else {"weights"}
        return {k: v if k in whole else v[index] for k, v in state.items()}

    def _step_weights(self, stepwise: bool) -> dict[str, StepWeight]:
        """The weights each step multiplies by, for one pass (a batch, a sampling rollout): the three products
        that read h (attention query, context gate, LSTM) as one, and each weight's gradient formed once
        after all steps (StepWeight). `stepwise` (decoding, sampling): the word's product is per step too;
        teacher forcing runs it as one product over all steps."""
        embed_dim = self.embed.embedding_dim
        weights = {"reads_h": StepWeight(torch.cat([self.hidden_attn.weight, self.gate.weight, self.cell.weight_hh])),
                   "reads_context": StepWeight(self.cell.weight_ih[:, embed_dim:])}
        if stepwise:
            weights["reads_word"] = StepWeight(self.cell.weight_ih[:, :embed_dim])
        return weights

    def _lstm_step(self, weights: dict[str, StepWeight], word_gates: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
                   grid: torch.Tensor, grid_attn: torch.Tensor, image_rows: torch.Tensor | None):
        """Attend from h, then nn.LSTMCell's update -> (h, c, context, alpha). word_gates: the word's part of
        the LSTM's gates, with both biases."""
        widths = [self.hidden_attn.out_features, self.gate.out_features, self.cell.weight_hh.shape[0]]
        query, gate, hidden_gates = weights["reads_h"](h).split(widths, dim=1)
        context, alpha = self._attend(query + self.hidden_attn.bias, gate + self.gate.bias, grid, grid_attn,
                                      image_rows)
        h, c = lstm_update(word_gates + weights["reads_context"](context) + hidden_gates, c)
        return h, c, context, alpha

    def _attend(self, query: torch.Tensor, gate: torch.Tensor, grid: torch.Tensor, grid_attn: torch.Tensor,
                image_rows: torch.Tensor | None = None):
        """query, gate: hidden_attn(h) and gate(h); image_rows: the row of grid and grid_attn that each row
        attends to (None: one row per row of h)."""
        scores = additive_scores(grid_attn, image_rows, query, self.attn_score, self.score_activation)
        alpha = torch.softmax(scores, dim=1)              # float32 under bf16 autocast too
        context = torch.sigmoid(gate) * attention_context(grid, image_rows, alpha)
        return context, alpha

    def _logits(self, h: torch.Tensor, context: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        if self.deep_output:
            return self.out(self.dropout(torch.tanh(self.out_hidden(torch.cat([h, context, words], dim=1)))))
        return self.out(self.dropout(h))

    def _advance(self, words: torch.Tensor, state: State):
        """One step from word embeddings [B, E] -> (logits, state, alpha [B, L])."""
        weights = state["weights"]
        word_gates = weights["reads_word"](words) + (self.cell.bias_ih + self.cell.bias_hh)
        h, c, context, alpha = self._lstm_step(weights, word_gates, state["h"], state["c"], state["grid"],
                                               state["grid_attn"], state.get("image_rows"))
        return self._logits(h, context, words), {**state, "h": h, "c": c}, alpha

    def forward(self, features: ImageFeatures, inputs: torch.Tensor) -> torch.Tensor:
        batch, steps = inputs.shape
        order, rows, active = longest_first(inputs, features.index)
        image = self._start(features.grid, stepwise=False)
        h, c = image["h"][rows], image["c"][rows]                         # captions longest first
        if "image_rows" in image:            # the fused kernels read each caption's image row
            image_rows, grid, grid_attn = rows, image["grid"], image["grid_attn"]
        else:
            image_rows, grid, grid_attn = None, image["grid"][rows], image["grid_attn"][rows]
        # No dropout on the word embeddings (as Xu et al. and the best-known tutorial): only the output
        # layer's input is dropped; with both, training within a CPU budget underfits.
        words = self.embed(inputs[order].t())                             # [T, B, E]
        embed_dim = words.shape[2]
        word_gates = F.linear(words, self.cell.weight_ih[:, :embed_dim], self.cell.bias_ih + self.cell.bias_hh)
        # One tensor per step: slicing [B, T, 4H] at each step would cost a full-size zero gradient per step.
        word_gates, words = word_gates.unbind(0), words.unbind(0)
        outputs, contexts, word_rows, alphas, positions = [], [], [], [], []
        for t, n in enumerate(active):
            if n == 0:
                break
            if worth_cutting(n, h.shape[0]):
                # Ended captions drop out (on the per-caption grid, each cut costs a full-size zero gradient).
                h, c = h[:n], c[:n]
                if image_rows is None:
                    grid, grid_attn = grid[:n], grid_attn[:n]
                else:
                    image_rows = image_rows[:n]
            h, c, context, alpha = self._lstm_step(image["weights"], word_gates[t][:h.shape[0]], h, c, grid,
                                                   grid_attn, image_rows)
            outputs.append(h[:n])                                         # rows past their end are not scored
            contexts.append(context[:n])
            word_rows.append(words[t][:n])
            alphas.append(F.pad(alpha[:n], (0, 0, 0, batch - n)))
            positions.append(order[:n] * steps + t)
        logits = self._logits(torch.cat(outputs), torch.cat(contexts), torch.cat(word_rows))   # one output product
        full = logits.new_zeros(batch * steps, logits.shape[1]).index_copy(0, torch.cat(positions), logits)
        if self.doubly_stochastic and self.training:
            coverage = torch.stack(alphas, dim=1).sum(dim=1)              # [B, L]; ended captions add zeros
            self._aux = self.doubly_stochastic * ((1.0 - coverage) ** 2).mean()
        else:
            self._aux = 0.0
        return full.view(batch, steps, -1)

    def auxiliary_loss(self):
        return self._aux

    def init_state(self, features: ImageFeatures) -> State:
        return self._start(features.grid, features.index)

    def step(self, tokens: torch.Tensor, state: State):
        return self._advance(self.embed(tokens), state)


class SoftAttentionDecoder(AttentionLSTMDecoder):
    pass


class BahdanauGatedDecoder(AttentionLSTMDecoder):
    score_activation = "tanh"
    deep_output = True
    doubly_stochastic = 0.0
