"""Scheduled sampling (Bengio et al. 2015): during training, some inputs are the model's own sampled words
instead of the reference's, so the model learns to continue from its own mistakes as it must when
decoding. The probability grows linearly over the cross-entropy epochs, from 0 in the first to
`train.scheduled_sampling` in the last.

It runs through the decoders' one-step interface (`init_state` + `step`), so it works for every family,
one step at a time: slower than teacher forcing, and without the attention decoders' doubly stochastic
penalty (which needs the whole teacher-forced pass).
"""
from __future__ import annotations

import torch

from captioning.models.decoders import Decoder, ImageFeatures


def sampling_probability(maximum: float, epoch: int, epochs: int) -> float:
    """Linear ramp: 0 at the first epoch (0-based `epoch`), `maximum` at the last."""
    return maximum * epoch / max(epochs - 1, 1) if maximum else 0.0


def scheduled_sampling_logits(decoder: Decoder, feats: ImageFeatures, inputs: torch.Tensor, probability: float,
                              generator: torch.Generator | None = None) -> torch.Tensor:
    """Like `decoder(feats, inputs)` (logits [B, T, V]), but each input after <start> is, with `probability`,
    a word sampled from the model's previous prediction instead of the reference word."""
    state = decoder.init_state(feats.per_caption())
    token = inputs[:, 0]
    logits = []
    for t in range(inputs.shape[1]):
        if t > 0:
            token = inputs[:, t]
            if probability > 0:
                swap = torch.rand(token.shape, generator=generator, device=token.device) < probability
                probabilities = torch.softmax(logits[-1].detach().float(), -1)
                sampled = torch.multinomial(probabilities, 1, generator=generator).squeeze(1)
                # A finished reference stays finished: its padding is not trained on anyway.
                token = torch.where(swap & (token != 0), sampled, token)
        step_logits, state, _ = decoder.step(token, state)
        logits.append(step_logits)
    return torch.stack(logits, dim=1)
