"""FlashInfer planning on CPU: the wrapper arrays imply exactly the KV each row may see.

``wrapper_visible_slots`` reads a :class:`PagedPlan` the way FlashInfer's paged wrappers do
(kv_len from the page count and last-page fill, bottom-right causal rows), so comparing it with
the layouts' truth, and attention computed from it with the torch backend, checks every array
the GPU kernels will receive.
"""

from __future__ import annotations

import pytest
import torch

from engine.attention.base import SegmentLayout, build_metadata
from engine.attention.flashinfer_plan import (
    PagedPlan,
    StepPlan,
    plan_step,
    use_tensor_cores,
)
from engine.attention.torch_backend import TorchAttentionBackend

from tests.support.paged_batches import MIXED_BATCHES, attend_slots, make_batch, paged_visible_slots, visible_slots

CPU = torch.device("cpu")


def wrapper_visible_slots(plan: PagedPlan) -> list[list[int]]:
    """Per query row of the plan, the cache slots a paged wrapper with causal=True reads."""
    return paged_visible_slots(plan.qo_indptr, plan.kv_page_indptr, plan.kv_page_indices, plan.kv_last_page_len,
                               plan.page_size)


def step_visible_slots(step: StepPlan) -> list[list[int]]:
    """Per batch row, the slots it sees after the decode and prefill parts are put back."""
    rows: list[list[int] | None] = [None] * step.num_rows
    for part, sel in ((step.decode, step.decode_rows), (step.prefill, step.prefill_rows)):
        if part is None:
            assert sel is None
            continue
        ids = list(range(step.num_rows)[sel]) if isinstance(sel, slice) else sel.tolist()
        seen = wrapper_visible_slots(part)
        assert len(seen) == len(ids) == part.num_rows
        for r, visible in zip(ids, seen):
            assert rows[r] is None, f"row {r} planned twice"
            rows[r] = visible
    assert all(r is not None for r in rows), "every row is planned"
    return rows


CASES = MIXED_BATCHES


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("block_size", [1, 4, 16])
def test_plan_sees_exactly_the_layouts_kv(case, block_size):
    kinds, lengths = CASES[case]
    batch = make_batch(kinds, lengths, block_size=block_size, num_q_heads=4, num_kv_heads=2, head_dim=8,
                       seed=sorted(CASES).index(case) + 10 * block_size)
    step = plan_step(batch.meta)
    assert step_visible_slots(step) == visible_slots(batch.layouts, block_size)


@pytest.mark.parametrize("case", sorted(CASES))
def test_emulated_wrapper_output_matches_torch_backend(case):
    kinds, lengths = CASES[case]
    batch = make_batch(kinds, lengths, block_size=4, num_q_heads=8, num_kv_heads=2, head_dim=16, seed=7)
    scale = 0.3
    torch_backend = TorchAttentionBackend(8, 2, 16, scale)
    torch_backend.plan(batch.meta)
    expected = torch_backend.forward(batch.q, batch.kv_cache)
    emulated = attend_slots(batch.q, batch.kv_cache, step_visible_slots(plan_step(batch.meta)), scale)
    torch.testing.assert_close(emulated.float(), expected, rtol=1e-5, atol=1e-5)


def test_known_arrays_for_a_small_step():
    # block_size 4; seq A decodes at position 5 on pages (5, 2); seq B recomputes runs [0, 2) and
    # [7, 10) on pages (1, 4, 0); seq C prefills [2, 4) on page (3,), whose last page is full.
    a, b, c = (5, 2), (1, 4, 0), (3,)
    layouts = [SegmentLayout(1, 6, a), SegmentLayout(2, 2, b), SegmentLayout(3, 10, b), SegmentLayout(2, 4, c)]
    positions = [5, 0, 1, 7, 8, 9, 2, 3]
    meta = build_metadata(layouts, positions, [0] * 8, 4, CPU)
    step = plan_step(meta)
    assert step.decode_rows == slice(0, 1) and step.prefill_rows == slice(1, 8)
    assert step.decode.qo_indptr.tolist() == [0, 1]
    assert step.decode.kv_page_indptr.tolist() == [0, 2]
    assert step.decode.kv_page_indices.tolist() == [5, 2]
    assert step.decode.kv_last_page_len.tolist() == [2]
    assert step.prefill.qo_indptr.tolist() == [0, 2, 5, 7]
    assert step.prefill.kv_page_indptr.tolist() == [0, 1, 4, 5]
    assert step.prefill.kv_page_indices.tolist() == [1, 1, 4, 0, 3]
    assert step.prefill.kv_last_page_len.tolist() == [2, 2, 4]
    for plan in (step.decode, step.prefill):
        assert plan.qo_indptr.dtype == plan.kv_page_indptr.dtype == torch.int32
        assert plan.kv_page_indices.dtype == plan.kv_last_page_len.dtype == torch.int32


def test_interleaved_decode_rows_are_gathered_by_index():
    # rows: decode, 3-row prefill, decode -> neither part is contiguous in the batch.
    layouts = [SegmentLayout(1, 3, (0,)), SegmentLayout(3, 7, (2, 1)), SegmentLayout(1, 9, (4, 3, 5))]
    meta = build_metadata(layouts, [2, 4, 5, 6, 8], [0] * 5, 4, CPU)
    step = plan_step(meta)
    assert step.decode_rows.tolist() == [0, 4] and step.decode_rows.dtype == torch.int64
    assert step.prefill_rows == slice(1, 4)
    # The decode part's pages are gathered from two places of the step's page list.
    assert step.decode.kv_page_indices.tolist() == [0, 4, 3, 5]
    assert step.decode.kv_page_indptr.tolist() == [0, 1, 4]
    assert step.decode.is_decode and not step.prefill.is_decode


def test_single_kind_steps_have_one_part():
    decode = build_metadata([SegmentLayout(1, 3, (0,)), SegmentLayout(1, 1, (1,))], [2, 0], [0, 0], 4, CPU)
    step = plan_step(decode)
    assert step.prefill is None and step.prefill_rows is None and step.decode_rows == slice(0, 2)
    prefill = build_metadata([SegmentLayout(3, 3, (0,))], [0, 1, 2], [0, 1, 2], 4, CPU)
    step = plan_step(prefill)
    assert step.decode is None and step.decode_rows is None and step.prefill_rows == slice(0, 3)
    # The page list is passed through as is (no gather) when the part owns all of it.
    assert step.prefill.kv_page_indices.data_ptr() == prefill.kv_page_indices.data_ptr()


def test_tensor_core_decode_for_wide_groups():
    assert not use_tensor_cores(32, 8)  # Llama-3.1-8B: group 4
    assert use_tensor_cores(64, 8)
    assert not use_tensor_cores(8, 8)
