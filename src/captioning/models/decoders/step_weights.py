"""A weight that every step of a recurrence multiplies by: its gradient as one product over all steps.

Autograd's own `F.linear` at each step computes that step's weight gradient, a small product of a few
dozen rows, and adds it to the running sum. cuDNN's RNNs instead keep each step's input and output
gradient and form the weight gradient once, from all steps' rows stacked: one large product that runs
near the machine's matrix-product rate, and no per-step sums of a [out, in] tensor. `StepWeight` does
the same for a Python loop: `_StepProduct` returns only the input's gradient and records the step's
rows; `_Cast`, the weight's one use in the graph, runs its backward after every step's backward (autograd
runs a node once all its consumers are done) and forms the whole gradient there.
"""
from __future__ import annotations

import torch


class _Cast(torch.autograd.Function):
    """The weight in the steps' dtype (bf16 under autocast), cast once; backward: the summed gradient."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, dtype: torch.dtype, rows: list):
        ctx.set_materialize_grads(False)
        ctx.rows, ctx.dtype = rows, weight.dtype
        return weight.to(dtype, copy=True)

    @staticmethod
    def backward(ctx, _unused):
        if not ctx.rows:
            return None, None, None
        inputs, grads = zip(*ctx.rows)
        ctx.rows.clear()
        grad = torch.cat(grads).t() @ torch.cat(inputs)
        return grad.to(ctx.dtype), None, None


class _StepProduct(torch.autograd.Function):
    """x @ weight.T; backward gives x's gradient and leaves (x, grad) for `_Cast` to sum."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, rows: list):
        x = x.to(weight.dtype)
        ctx.save_for_backward(x, weight)
        ctx.rows = rows
        return x @ weight.t()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.to(weight.dtype)
        ctx.rows.append((x, grad))
        return (grad @ weight if ctx.needs_input_grad[0] else None), None, None


class StepWeight:
    """`weight` [out, in] for one forward pass of a recurrence: `step(x)` is x @ weight.T in the
    autocast dtype (if autocast is on), and the weight's gradient is formed once, after all steps."""

    def __init__(self, weight: torch.Tensor):
        device = weight.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
        self._rows: list = []
        self._weight = _Cast.apply(weight, dtype, self._rows) if weight.requires_grad else weight.to(dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self._weight.requires_grad:
            return x.to(self._weight.dtype) @ self._weight.t()
        return _StepProduct.apply(x, self._weight, self._rows)
