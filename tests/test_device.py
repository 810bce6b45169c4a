"""train.precision: which autocast dtype a training run uses."""
import pytest
import torch

from captioning.io import InputError
from captioning.train.device import autocast_dtype, cpu_has_native_bf16

CPU = torch.device("cpu")


def test_auto_uses_bf16_on_a_cpu_with_native_bf16_else_float32():
    assert autocast_dtype(CPU, "auto") == (torch.bfloat16 if cpu_has_native_bf16() else None)
    assert autocast_dtype(torch.device("cuda"), "auto") == torch.float16
    assert autocast_dtype(CPU, "fp32") is None
    assert autocast_dtype(CPU, "bf16") == torch.bfloat16


def test_fp16_on_cpu_is_refused_naming_the_key_and_the_choices():
    with pytest.raises(InputError, match=r"train\.precision.*'fp16'.*CUDA.*'bf16', 'fp32' or 'auto'"):
        autocast_dtype(CPU, "fp16")
