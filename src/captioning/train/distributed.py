"""Data-parallel training under `torchrun` (DDP: nccl on GPUs, gloo on CPUs).

Every rank builds the same global batches (same seed), takes its slice of each, and scales its summed
loss by the global token count, so the all-reduced gradient equals that of one process running the
whole global batch. Each rank draws its own dropout (the seed offset by its rank, as nanoGPT does);
decisions that end a phase or keep an epoch are rank 0's, so ranks cannot disagree and wait on each
other forever. Rank 0 alone writes checkpoints, logs and the model.

On GPUs the group has both backends ("cpu:gloo,cuda:nccl"): NCCL reduces only CUDA tensors, and the
logged values, decisions and random states travel as CPU objects.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device_name: str = "auto") -> torch.device | None:
    """Join the process group torchrun set up; returns this rank's device, or None when not distributed."""
    if not launched_by_torchrun() or dist.is_initialized():
        return None
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    dist.init_process_group("cpu:gloo,cuda:nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    if rank_and_world()[1] == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def shard(batch: np.ndarray) -> np.ndarray:
    """This rank's part of a global batch (contiguous, so token counts stay close across ranks)."""
    rank, world = rank_and_world()
    return np.array_split(batch, world)[rank] if world > 1 else batch


def global_mean(value: float) -> float:
    """The mean over ranks of a per-rank value (the logged loss of the whole global batch)."""
    rank, world = rank_and_world()
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / world


def seed_rank(seed: int) -> None:
    """After the model is built (DDP gives every rank rank 0's weights): each rank its own random stream."""
    rank, world = rank_and_world()
    if world > 1:
        torch.manual_seed(seed + rank)


def from_main(value: float) -> float:
    """Rank 0's value on every rank."""
    if rank_and_world()[1] == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(t, src=0)
    return float(t.item())


def gather_to_main(obj: object) -> list:
    """Every rank's `obj`, in rank order (a collective: all ranks call it; only rank 0's list is complete)."""
    rank, world = rank_and_world()
    if world == 1:
        return [obj]
    out = [None] * world if rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out or []


def is_main() -> bool:
    return rank_and_world()[0] == 0
