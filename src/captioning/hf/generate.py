"""Captions from images with transformers' `generate`: greedy (beam 1) or beam search, with the same
`decode.*` parameters as the other models."""
from __future__ import annotations

import torch

# GPT-2's byte-pair tokens split rare words, so `max_length` words get room for more tokens.
TOKENS_PER_WORD = 2


@torch.inference_mode()
def generate_captions(model, tokenizer, pixel_values: torch.Tensor, beam_size: int, max_length: int,
                      length_penalty: float = 0.0) -> list[str]:
    out = model.generate(pixel_values=pixel_values, num_beams=beam_size, do_sample=False,
                         max_new_tokens=TOKENS_PER_WORD * max_length, length_penalty=length_penalty,
                         early_stopping=True if beam_size > 1 else False)
    captions = [" ".join(text.split()) for text in tokenizer.batch_decode(out, skip_special_tokens=True)]
    return [" ".join(c.split()[:max_length]) for c in captions]
