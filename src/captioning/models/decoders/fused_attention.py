"""Additive attention over an image grid, fused into one pass forward and one backward on CPU.

For each caption b with image row i = rows[b], at one decoding step:
  scores[b, r] = w . relu(keys[i, r] + query[b]) + bias        (Show, Attend and Tell's ReLU scoring)
  context[b]   = sum_r alpha[b, r] * values[i, r]

Eager PyTorch writes [captions, regions, width] tensors several times per step for these: the sum, the
ReLU, the score layer's outer-product gradient, the ReLU's gradient, the grid's gradient, each caption's
copy of its image's grid and the zero-padded gradients of its cuts. That element-wise traffic, not the
matrix products, was the largest part of an attention decoder's training step on CPU. These kernels
(numba) read the per-image keys and values once per caption and write only the results forward and the
gradients backward. GPUs keep the eager expressions (they fuse element-wise work well); the tests
compare the two.

The kernels run on one thread: torch's OpenMP threads spin for a while after each operation, and a
second thread pool competing with them for 2 cores made the backward twice as slow. They accumulate in
float32 (under bf16 autocast too) in a fixed order, so a run gives the same numbers every time.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit


@njit(fastmath=True, cache=True)
def _relu_scores(keys, rows, query, weight, bias, out):
    for b in range(out.shape[0]):
        q = query[b]
        for r in range(out.shape[1]):
            k, total = keys[rows[b], r], np.float32(0.0)
            for a in range(weight.shape[0]):
                total += weight[a] * max(k[a] + q[a], np.float32(0.0))
            out[b, r] = total + bias


@njit(fastmath=True, cache=True)
def _relu_scores_backward(keys, rows, query, weight, d_scores, d_keys, d_query, d_weight):
    """The weight multiplies the key and query gradients once, at the end."""
    d_weight[:] = 0.0
    d_query[:] = 0.0
    for b in range(d_scores.shape[0]):
        i = rows[b]
        for r in range(d_scores.shape[1]):
            d = d_scores[b, r]
            for a in range(weight.shape[0]):
                z = keys[i, r, a] + query[b, a]
                grad = d * (z > 0.0)
                d_query[b, a] += grad
                d_keys[i, r, a] += grad
                d_weight[a] += grad * z
    d_query *= weight
    d_keys *= weight


@njit(fastmath=True, cache=True)
def _context(values, rows, alpha, out):
    total = np.empty(values.shape[2], np.float32)
    for b in range(out.shape[0]):
        total[:] = 0.0
        for r in range(alpha.shape[1]):
            weight, v = alpha[b, r], values[rows[b], r]
            for c in range(total.shape[0]):
                total[c] += weight * v[c]
        out[b] = total


@njit(fastmath=True, cache=True)
def _context_backward(values, rows, alpha, d_context, d_values, d_alpha):
    for b in range(alpha.shape[0]):
        i = rows[b]
        for r in range(alpha.shape[1]):
            dot = np.float32(0.0)
            for c in range(d_context.shape[1]):
                dot += d_context[b, c] * values[i, r, c]
                d_values[i, r, c] += alpha[b, r] * d_context[b, c]
            d_alpha[b, r] = dot


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().contiguous().numpy()


class _ReluScores(torch.autograd.Function):
    @staticmethod
    def forward(ctx, keys, rows, query, weight, bias):
        scores = np.empty((query.shape[0], keys.shape[1]), np.float32)
        _relu_scores(_numpy(keys), rows.numpy(), _numpy(query), _numpy(weight).ravel(), np.float32(bias.item()),
                     scores)
        ctx.save_for_backward(keys, rows, query, weight)
        ctx.bias_shape = bias.shape
        return torch.from_numpy(scores)

    @staticmethod
    def backward(ctx, d_scores):
        keys, rows, query, weight = ctx.saved_tensors
        d_keys, d_query = np.zeros(keys.shape, np.float32), np.empty(query.shape, np.float32)
        d_weight = np.empty(weight.numel(), np.float32)
        _relu_scores_backward(_numpy(keys), rows.numpy(), _numpy(query), _numpy(weight).ravel(), _numpy(d_scores),
                              d_keys, d_query, d_weight)
        return (torch.from_numpy(d_keys).to(keys.dtype), None, torch.from_numpy(d_query).to(query.dtype),
                torch.from_numpy(d_weight).view_as(weight), d_scores.sum().reshape(ctx.bias_shape))


class _Context(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, rows, alpha):
        context = np.empty((alpha.shape[0], values.shape[2]), np.float32)
        _context(_numpy(values), rows.numpy(), _numpy(alpha), context)
        ctx.save_for_backward(values, rows, alpha)
        return torch.from_numpy(context)

    @staticmethod
    def backward(ctx, d_context):
        values, rows, alpha = ctx.saved_tensors
        d_values, d_alpha = np.zeros(values.shape, np.float32), np.empty(alpha.shape, np.float32)
        _context_backward(_numpy(values), rows.numpy(), _numpy(alpha), _numpy(d_context), d_values, d_alpha)
        return torch.from_numpy(d_values).to(values.dtype), None, torch.from_numpy(d_alpha).to(alpha.dtype)


def fuses(device: torch.device) -> bool:
    """Whether the functions below run the fused kernels (on CPU) rather than eager PyTorch (on a GPU).
    Callers keep keys and values one row per image when they do, one row per caption when they do not."""
    return device.type == "cpu"


def additive_scores(keys: torch.Tensor, rows: torch.Tensor | None, query: torch.Tensor, score: torch.nn.Linear,
                    activation: str) -> torch.Tensor:
    """[captions, regions] float32 scores. keys [images, regions, width]; rows [captions]: each caption's
    image row (None: one key row per caption); query [captions, width]; score: the width -> 1 layer;
    activation "relu" (fused on CPU) or "tanh" (eager everywhere: it has no fast vectorised form here)."""
    if fuses(keys.device) and activation == "relu":
        rows = torch.arange(query.shape[0]) if rows is None else rows
        return _ReluScores.apply(keys, rows, query, score.weight, score.bias)
    selected = keys if rows is None else keys[rows]
    act = torch.relu if activation == "relu" else torch.tanh
    return score(act(selected + query.unsqueeze(1))).squeeze(2).float()


def attention_context(values: torch.Tensor, rows: torch.Tensor | None, alpha: torch.Tensor) -> torch.Tensor:
    """[captions, channels]: each caption's attention-weighted sum of its image's values [images, regions,
    channels] under alpha [captions, regions] (rows as for `additive_scores`)."""
    if fuses(values.device):
        rows = torch.arange(alpha.shape[0]) if rows is None else rows
        return _Context.apply(values, rows, alpha)
    selected = values if rows is None else values[rows]
    return torch.bmm(alpha.unsqueeze(1).to(selected.dtype), selected).squeeze(1)
