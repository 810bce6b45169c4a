"""The merge architecture (Tanti et al. 2017, "Where to put the image in an image caption generator"),
as the DenseNet121-from-scratch blog builds it: the LSTM reads only the words; the image joins after it.

Head: the pooled image through Linear + PReLU, added to the LSTM's output, then Linear + PReLU and the
word layer: the blog's two-layer PReLU head. The image never enters the recurrence, so the language
model and the image projection can be trained (and swapped) separately.
"""
from __future__ import annotations

import torch
from torch import nn

from captioning.models.decoders.base import Decoder, DecoderConfig, ImageFeatures, State


class MergeDecoder(Decoder):
    shares_image_work = True     # batches of whole images: an encoder trained with it sees each image once an epoch

    def __init__(self, config: DecoderConfig):
        super().__init__(config)
        c = config
        self.image_head = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(c.pooled_dim, c.hidden_dim), nn.PReLU())
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim)
        self.lstm = nn.LSTM(c.embed_dim, c.hidden_dim, c.num_layers, batch_first=True,
                            dropout=c.dropout if c.num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(c.dropout)
        self.merged_head = nn.Sequential(nn.Linear(c.hidden_dim, c.hidden_dim), nn.PReLU())
        self.out = nn.Linear(c.hidden_dim, c.vocab_size)

    def _words(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.out(self.merged_head(image + self.dropout(text)))

    def forward(self, features: ImageFeatures, inputs: torch.Tensor) -> torch.Tensor:
        image = self.image_head(features.pooled)                                  # once per image
        if features.index is not None:
            image = image[features.index]
        image = image.unsqueeze(1)                                                # [B, 1, H]
        text, _ = self.lstm(self.dropout(self.embed(inputs)))                   # [B, T, H]
        return self._words(image, text)

    def init_state(self, features: ImageFeatures) -> State:
        image = self.image_head(features.pooled)
        zeros = image.new_zeros(image.shape[0], self.config.num_layers, self.config.hidden_dim)
        return {"image": image, "h": zeros, "c": zeros.clone()}

    def step(self, tokens: torch.Tensor, state: State):
        hc = (state["h"].transpose(0, 1).contiguous(), state["c"].transpose(0, 1).contiguous())
        text, (h, c) = self.lstm(self.embed(tokens).unsqueeze(1), hc)
        logits = self._words(state["image"], text[:, 0])
        return logits, {"image": state["image"], "h": h.transpose(0, 1), "c": c.transpose(0, 1)}, None
