"""Backend selection: names, and a clear error for flashinfer where it cannot run."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from engine.attention import make_attention_backend
from engine.attention.torch_backend import TorchAttentionBackend


def test_torch_backend_by_name():
    backend = make_attention_backend("torch", 8, 2, 16, 0.25, torch.device("cpu"))
    assert isinstance(backend, TorchAttentionBackend)
    assert (backend.num_q_heads, backend.num_kv_heads, backend.head_dim, backend.scale) == (8, 2, 16, 0.25)


def test_unknown_backend_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown attention backend 'flash'.*torch, flashinfer"):
        make_attention_backend("flash", 8, 2, 16, 0.25, torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_flashinfer_without_cuda_says_so_before_importing_it():
    with pytest.raises(RuntimeError, match="runs on CUDA only.*backend 'torch'"):
        make_attention_backend("flashinfer", 8, 2, 16, 0.25, torch.device("cpu"))
    with pytest.raises(RuntimeError, match="CUDA only"):
        make_attention_backend("flashinfer", 8, 2, 16, 0.25, torch.device("cuda"))
    assert "flashinfer" not in sys.modules, "flashinfer is imported only when it can run"


@pytest.mark.skipif(importlib.util.find_spec("flashinfer") is not None, reason="flashinfer is installed")
def test_missing_flashinfer_names_the_gpu_extra():
    from engine.attention import flashinfer as backend_module

    with pytest.raises(RuntimeError, match=r"flashinfer-python.*gpu extra"):
        backend_module.import_flashinfer()
