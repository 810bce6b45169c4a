"""train.precision: which autocast dtype a training run uses."""
import contextlib
import os
import subprocess
import sys

import pytest
import torch

from captioning.io import InputError
from captioning.train.device import autocast_context, autocast_dtype, cpu_has_native_bf16

CPU = torch.device("cpu")


def test_auto_uses_bf16_on_a_cpu_with_native_bf16_else_float32():
    assert autocast_dtype(CPU, "auto") == (torch.bfloat16 if cpu_has_native_bf16() else None)
    assert autocast_dtype(torch.device("cuda"), "auto") == torch.float16
    assert autocast_dtype(CPU, "fp32") is None
    assert autocast_dtype(CPU, "bf16") == torch.bfloat16


def test_fp16_on_cpu_is_refused_naming_the_key_and_the_choices():
    with pytest.raises(InputError, match=r"train\.precision.*'fp16'.*CUDA.*'bf16', 'fp32' or 'auto'"):
        autocast_dtype(CPU, "fp16")


def _threads_after_set_cpu_threads(env: dict) -> int:
    code = ("from captioning.train.device import set_cpu_threads; import torch; "
            "set_cpu_threads(); print(torch.get_num_threads())")
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "LOCAL_WORLD_SIZE")}
    return int(subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                              check=True).stdout)


def test_threads_follow_omp_num_threads_so_queued_jobs_share_the_cores():
    cores = len(os.sched_getaffinity(0))
    assert _threads_after_set_cpu_threads({"OMP_NUM_THREADS": "1"}) == 1
    assert _threads_after_set_cpu_threads({}) == cores
    assert _threads_after_set_cpu_threads({"LOCAL_WORLD_SIZE": str(cores)}) == 1     # torchrun ranks share them


@pytest.mark.parametrize("device_type", ["cpu", "mps"])
def test_float32_runs_without_an_autocast_region_on_cpu_and_mps(device_type):
    """No autocast is constructed for float32: torch 2.4 refuses torch.autocast("mps") even when disabled."""
    device = torch.device(device_type)       # a device object only: no MPS hardware is needed
    context = autocast_context(device, autocast_dtype(device, "fp32"))
    assert isinstance(context, contextlib.nullcontext)
    with context:
        assert not torch.is_autocast_enabled(device_type)


def test_bf16_on_cpu_runs_the_forward_pass_in_bfloat16():
    x = torch.ones(4, 4)
    with autocast_context(CPU, autocast_dtype(CPU, "bf16")):
        assert (x @ x).dtype == torch.bfloat16
    assert (x @ x).dtype == torch.float32
