"""ViT-GPT2 (train.decoder: vit_gpt2) training cost on this machine: end to end from the images (the
pipeline's way: the ViT is fine-tuned) against a frozen ViT whose patch states would be cached (only
GPT-2 and its cross-attention train). Full-size ViT-Base/16 and GPT-2 small configurations with random
weights (no download: the cost of a step does not depend on the weights).

python bench/vit_gpt2_step.py [--captions 64] [--steps 3]
Prints seconds per step of `--captions` captions (5 per image, 20 tokens) for both ways, their ratio,
and the projected time of one Flickr8k epoch (30,000 captions).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from transformers.modeling_outputs import BaseModelOutput

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from captioning.hf.train import caption_loss  # noqa: E402
from captioning.train.device import autocast_dtype, set_cpu_threads  # noqa: E402


def build():
    from transformers import GPT2Config, GPT2LMHeadModel, VisionEncoderDecoderModel, ViTConfig, ViTModel
    vit = ViTModel(ViTConfig(), add_pooling_layer=False)                       # ViT-Base/16, 224
    gpt2 = GPT2LMHeadModel(GPT2Config(is_decoder=True, add_cross_attention=True))   # GPT-2 small + cross-attention
    model = VisionEncoderDecoderModel(encoder=vit, decoder=gpt2)
    model.config.decoder_start_token_id = model.config.pad_token_id = gpt2.config.eos_token_id
    return model


def time_steps(model, frozen: bool, images: torch.Tensor, cached: torch.Tensor, index, labels, steps: int,
               amp) -> float:
    for p in model.encoder.parameters():
        p.requires_grad_(not frozen)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    times = []
    for _ in range(steps + 1):                   # the first step warms up
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
            if frozen:     # cached patch states: the ViT does not run at all
                logits = model(encoder_outputs=BaseModelOutput(last_hidden_state=cached[index]), labels=labels).logits
                loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten())
            else:
                loss = caption_loss(model, images, index, labels, 0.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    set_cpu_threads()
    print(describe())
    torch.manual_seed(0)
    model = build()
    n_images = max(1, args.captions // 5)
    images = torch.randn(n_images, 3, 224, 224)
    index = torch.arange(n_images).repeat_interleave(5)[:args.captions]
    labels = torch.randint(0, 50257, (len(index), 20))
    amp = autocast_dtype(torch.device("cpu"), "auto")
    with torch.no_grad():
        cached = model.encoder(pixel_values=images).last_hidden_state       # what a feature cache would hold
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters; {len(index)} captions of {n_images} images "
          f"per step; autocast {amp}")
    end_to_end = time_steps(model, False, images, cached, index, labels, args.steps, amp)
    frozen = time_steps(model, True, images, cached, index, labels, args.steps, amp)
    per_epoch = 30_000 / len(index)
    print(f"end to end (ViT fine-tuned, from images): {end_to_end:.2f} s/step -> "
          f"{end_to_end * per_epoch / 60:.0f} min per Flickr8k epoch")
    print(f"frozen ViT, cached patch states:          {frozen:.2f} s/step -> "
          f"{frozen * per_epoch / 60:.0f} min per Flickr8k epoch")
    print(f"ratio: {end_to_end / frozen:.2f}x")
