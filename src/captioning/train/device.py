"""Device choice and CPU threading."""
from __future__ import annotations

import contextlib
import os
import platform
from typing import ContextManager, Optional

import torch

from captioning.io import InputError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device = 'cuda' but no CUDA GPU is visible; use 'auto' or 'cpu'")
    return torch.device(name)


def set_cpu_threads() -> None:
    """Intra-op threads: OMP_NUM_THREADS when it is set (1 for each of `dvc queue start -j 2` on 2 cores), else
    every core this process may use, shared between torchrun's ranks on this machine. An environment variable
    and not a parameter: the thread count must not change DVC's hash of a stage."""
    wanted = os.environ.get("OMP_NUM_THREADS", "")
    if wanted.isdigit() and int(wanted) > 0:
        torch.set_num_threads(int(wanted))
        return
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))   # torchrun: share the cores between ranks
    torch.set_num_threads(max(1, n // ranks_here))


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bfloat16 matrix products run much faster than float32 on such CPUs."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def precision_name(amp_dtype: Optional[torch.dtype]) -> str:
    """What the training forward pass ran in: bf16, fp16 or fp32."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp_dtype, "fp32")


def processor_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model with whether it has native bf16 (reruns are bit-identical only on
    the same kind of processor)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name} ({'native bf16' if cpu_has_native_bf16() else 'no native bf16'})"


def autocast_dtype(device: torch.device, precision: str) -> Optional[torch.dtype]:
    """train.precision -> the autocast dtype of the training forward pass (None = float32 throughout).
    Weights, optimizer state and decoding stay float32."""
    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise InputError(f"train.precision = 'fp16' needs a CUDA GPU (device here: {device.type}); "
                             "use 'bf16', 'fp32' or 'auto'")
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def autocast_context(device: torch.device, amp_dtype: Optional[torch.dtype]) -> ContextManager:
    """The forward pass's reduced-precision region, or no region at all for float32.

    A disabled torch.autocast is not a no-op everywhere: some torch builds refuse to construct one for
    device types they cannot autocast (MPS in torch 2.4), even with enabled=False.
    """
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype)
