"""The torch reference backend against a dense-mask oracle built from the layouts alone."""

from __future__ import annotations

import pytest
import torch

from engine.attention.torch_backend import TorchAttentionBackend

from tests.support.paged_batches import attend_slots, make_batch, visible_slots

CASES = {
    # kinds, lengths (odd page fills, exact page fills, a one-token sequence)
    "mixed": (["decode", "prefill", "compile", "recompute", "decode"], [37, 21, 16, 45, 1]),
    "decode_only": (["decode"] * 4, [5, 16, 33, 2]),
    "one_decode": (["decode"], [9]),
    "recompute_only": (["recompute", "recompute"], [64, 29]),
    "compile_only": (["compile", "compile", "compile"], [4, 17, 12]),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("heads", [(4, 4), (8, 2), (6, 1)], ids=["mha", "gqa4", "mqa6"])
@pytest.mark.parametrize("block_size", [4, 16])
def test_torch_backend_matches_dense_mask(case, heads, block_size):
    kinds, lengths = CASES[case]
    num_q_heads, num_kv_heads = heads
    batch = make_batch(
        kinds, lengths, block_size=block_size, num_q_heads=num_q_heads, num_kv_heads=num_kv_heads,
        head_dim=8, seed=sorted(CASES).index(case) * 100 + block_size + num_q_heads,
    )
    scale = 8**-0.5
    backend = TorchAttentionBackend(num_q_heads, num_kv_heads, 8, scale)
    backend.plan(batch.meta)
    out = backend.forward(batch.q, batch.kv_cache)
    expected = attend_slots(batch.q, batch.kv_cache, visible_slots(batch.layouts, block_size), scale)
    assert out.shape == batch.q.shape
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_batch_generator_covers_the_interesting_layouts():
    kinds, lengths = CASES["mixed"]
    batch = make_batch(kinds, lengths, block_size=4, num_q_heads=4, num_kv_heads=2, head_dim=8, seed=0)
    last_page = [s.kv_len - (-(-s.kv_len // 4) - 1) * 4 for s in batch.layouts]
    assert 4 in last_page and any(n < 4 for n in last_page), "full and partial last pages"
    assert any(s.num_rows < s.kv_len and s.num_rows > 1 for s in batch.layouts), "runs over longer KV"
    assert any(s.num_rows == 1 for s in batch.layouts), "decode rows"
    ids = [b for s in batch.layouts for b in s.block_ids]
    assert ids != sorted(ids), "page tables are not in block order"
    recompute_runs = [s for s in batch.layouts if s.block_ids == batch.layouts[-3].block_ids]
    assert len(recompute_runs) >= 2, "a recompute pass has several runs over one page table"
