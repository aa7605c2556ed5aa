"""The FlashInfer backend's own logic on CPU: planning calls, the decode/prefill split and the
row gathers. The two wrappers are replaced by ``cpu_flashinfer`` (same
signatures and semantics, dense math), since their kernels need CUDA; the outputs must equal
the torch reference backend's."""

from __future__ import annotations

import sys

import pytest
import torch

from engine.attention import flashinfer as backend_module
from engine.attention.flashinfer import FlashInferAttentionBackend
from engine.attention.torch_backend import TorchAttentionBackend

from tests.support import cpu_flashinfer
from tests.support.paged_batches import MIXED_BATCHES, make_batch

HEADS, KV_HEADS, HEAD_DIM, SCALE = 8, 2, 16, 0.25
BF16 = torch.bfloat16


def assert_matches(out: torch.Tensor, ref: torch.Tensor) -> None:
    """Equal up to rounding the output to bfloat16 (relative step 2**-8)."""
    assert out.dtype == BF16
    torch.testing.assert_close(out.float(), ref, rtol=4e-3, atol=1e-5)


@pytest.fixture
def backend(monkeypatch):
    """The backend on CPU with the CPU wrappers standing in for the CUDA kernels."""
    monkeypatch.setattr(backend_module, "require_cuda", lambda device: None)
    monkeypatch.setitem(sys.modules, "flashinfer", cpu_flashinfer)
    return FlashInferAttentionBackend(HEADS, KV_HEADS, HEAD_DIM, SCALE, "cpu", dtype=BF16, workspace_bytes=16)


def expected(batch) -> torch.Tensor:
    """The torch reference in float32 on the batch's bfloat16 values."""
    ref = TorchAttentionBackend(HEADS, KV_HEADS, HEAD_DIM, SCALE)
    ref.plan(batch.meta)
    return ref.forward(batch.q.float(), batch.kv_cache.float())


def batch_of(kinds, lengths, seed=0):
    return make_batch(kinds, lengths, block_size=4, num_q_heads=HEADS, num_kv_heads=KV_HEADS, head_dim=HEAD_DIM,
                      seed=seed, dtype=BF16)


CASES = MIXED_BATCHES


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_torch_backend(backend, case):
    batch = batch_of(*CASES[case])
    backend.plan(batch.meta)
    out = backend.forward(batch.q, batch.kv_cache)
    assert_matches(out, expected(batch))


def test_one_plan_serves_every_layer(backend):
    batch = batch_of(*CASES["mixed"])
    backend.plan(batch.meta)
    for layer in range(3):
        batch.kv_cache = torch.randn(batch.kv_cache.shape, generator=torch.Generator().manual_seed(layer)).to(BF16)
        assert_matches(backend.forward(batch.q, batch.kv_cache), expected(batch))


def test_rejects_inputs_it_was_not_planned_for(backend):
    batch = batch_of(*CASES["mixed"])
    with pytest.raises(AssertionError, match="plan"):
        backend.forward(batch.q, batch.kv_cache)
    backend.plan(batch.meta)
    with pytest.raises(AssertionError, match="planned for torch.bfloat16"):
        backend.forward(batch.q.half(), batch.kv_cache)
    with pytest.raises(AssertionError, match=f"planned {batch.q.shape[0]} rows"):
        backend.forward(batch.q[:-1], batch.kv_cache)


@pytest.mark.usefixtures("backend")  # CPU stand-ins for the CUDA kernels
def test_bad_settings():
    with pytest.raises(ValueError, match="float16, bfloat16"):
        FlashInferAttentionBackend(HEADS, KV_HEADS, HEAD_DIM, SCALE, "cpu", dtype=torch.float32)
