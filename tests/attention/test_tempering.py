"""APE tempering in the torch backend: exact logit terms, and attention against a dense oracle."""

from __future__ import annotations

import math
import sys

import cpu_flashinfer
import pytest
import torch
from paged_batches import make_batch, slot

from engine.attention import flashinfer as backend_module
from engine.attention.base import SegmentLayout, Tempering, build_metadata
from engine.attention.flashinfer import TEMPERING_UNSUPPORTED, FlashInferAttentionBackend
from engine.attention.tempering import tempering_terms
from engine.attention.torch_backend import TorchAttentionBackend

HEADS, KV_HEADS, HEAD_DIM, SCALE, BS = 4, 2, 8, 0.35, 4


def test_tempering_terms_are_exact_on_a_toy_layout():
    # One sequence, rows at positions 5, 6, 7; context runs [1, 3) and [4, 5); query from 6.
    visible = torch.arange(8)[None, :] <= torch.tensor([5, 6, 7])[:, None]
    t = Tempering(((1, 3), (4, 5)), 6, 0.5, 0.25)
    factor, bias = tempering_terms(visible[None], torch.tensor([[5, 6, 7]]), [t])
    assert factor[0, 0].tolist() == [1.0] * 8  # position 5 is before the question
    assert factor[0, 1].tolist() == [1, 2, 2, 1, 2, 1, 1, 1]
    assert torch.equal(factor[0, 2], factor[0, 1])
    log_s = torch.tensor(math.log(0.25)).item()  # float32
    inf = float("-inf")
    assert bias[0, 1].tolist() == [0, log_s, log_s, 0, log_s, 0, 0, inf]
    assert bias[0, 0].tolist() == [0, 0, 0, 0, 0, 0, inf, inf]


def oracle(q, kv_cache, layouts, temperings):
    """float64 dense attention with APE's terms, row by row, from the layouts alone."""
    out = torch.empty(q.shape, dtype=torch.float64)
    row = 0
    for seg, t in zip(layouts, temperings):
        for i in range(seg.num_rows):
            pos = seg.kv_len - seg.num_rows + i
            slots = [slot(seg.block_ids, p, BS) for p in range(pos + 1)]
            kv = kv_cache.double()[[s // BS for s in slots], :, [s % BS for s in slots]]  # [P, 2, Hkv, D]
            k = kv[:, 0].repeat_interleave(HEADS // KV_HEADS, dim=1)  # [P, Hq, D]
            v = kv[:, 1].repeat_interleave(HEADS // KV_HEADS, dim=1)
            logits = torch.einsum("hd,phd->hp", q[row].double(), k) * SCALE
            if t is not None and pos >= t.query_from:
                for s, e in t.runs:
                    logits[:, s:e] = logits[:, s:e] / t.temperature + math.log(t.scale)
            out[row] = torch.einsum("hp,phd->hd", logits.softmax(dim=-1), v)
            row += 1
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_torch_backend_tempers_runs_and_decode_rows(seed):
    batch = make_batch(["recompute", "decode", "decode", "prefill"], [41, 23, 30, 12], block_size=BS,
                       num_q_heads=HEADS, num_kv_heads=KV_HEADS, head_dim=HEAD_DIM, seed=seed)
    per_seq = [Tempering(((2, 20), (24, 30)), 38, 0.7, 0.8), Tempering(((1, 15),), 16, 0.5, 1.0), None,
               Tempering(((0, 5),), 6, 1.3, 0.5)]
    seq_of_segment, seen = [], []
    for seg in batch.layouts:  # segments of one sequence share its page table
        if seg.block_ids not in seen:
            seen.append(seg.block_ids)
        seq_of_segment.append(seen.index(seg.block_ids))
    temperings = [per_seq[i] for i in seq_of_segment]
    layouts = [SegmentLayout(s.num_rows, s.kv_len, s.block_ids, t) for s, t in zip(batch.layouts, temperings)]
    meta = build_metadata(layouts, batch.positions, batch.slot_mapping, BS, torch.device("cpu"))
    backend = TorchAttentionBackend(HEADS, KV_HEADS, HEAD_DIM, SCALE)
    backend.plan(meta)
    out = backend.forward(batch.q, batch.kv_cache)
    torch.testing.assert_close(out.double(), oracle(batch.q, batch.kv_cache, layouts, temperings),
                               rtol=1e-5, atol=1e-6)
    plain = TorchAttentionBackend(HEADS, KV_HEADS, HEAD_DIM, SCALE)
    plain.plan(batch.meta)
    assert not torch.allclose(plain.forward(batch.q, batch.kv_cache), out)


def test_flashinfer_backend_refuses_tempering(monkeypatch):
    monkeypatch.setattr(backend_module, "require_cuda", lambda device: None)
    monkeypatch.setitem(sys.modules, "flashinfer", cpu_flashinfer)
    backend = FlashInferAttentionBackend(HEADS, KV_HEADS, HEAD_DIM, SCALE, "cpu", dtype=torch.bfloat16,
                                         workspace_bytes=16)
    assert backend.supports_tempering is False
    layouts = [SegmentLayout(2, 6, (0, 1), Tempering(((1, 3),), 4, 0.5, 1.0))]
    meta = build_metadata(layouts, [4, 5], [4, 5], BS, torch.device("cpu"))
    with pytest.raises(ValueError, match="cannot apply a link policy's temperature"):
        backend.plan(meta)
    assert "backend 'torch'" in TEMPERING_UNSUPPORTED
