"""Random mixed attention batches and a dense-mask oracle, shared by the attention tests.

A batch mixes every kind of query segment the engine produces, over page tables whose block
ids are shuffled (not in position order) and whose last pages are partly filled:

    decode:     one row at the sequence's last position
    prefill:    the tail of a sequence (a prefill piece after cached rows)
    compile:    a whole independent sequence
    recompute:  several runs at arbitrary positions over one sequence's whole KV
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.attention.base import AttentionMetadata, SegmentLayout, build_metadata


@dataclass
class PagedBatch:
    layouts: list[SegmentLayout]
    positions: list[int]  # [N]
    slot_mapping: list[int]  # [N]
    meta: AttentionMetadata
    kv_cache: torch.Tensor  # [num_blocks, 2, block_size, Hkv, D]
    q: torch.Tensor  # [N, Hq, D]


# kinds, lengths: batches mixing every row kind, decodes first, decodes only, no decode at all
MIXED_BATCHES = {
    "mixed": (["decode", "prefill", "compile", "recompute", "decode"], [37, 21, 16, 45, 1]),
    "decodes_first": (["decode", "decode", "recompute", "prefill"], [30, 8, 40, 19]),
    "decode_only": (["decode"] * 5, [5, 16, 33, 2, 64]),
    "prefill_only": (["compile", "recompute", "prefill"], [16, 52, 9]),
}


def slot(block_ids: tuple[int, ...], pos: int, block_size: int) -> int:
    return block_ids[pos // block_size] * block_size + pos % block_size


def sequence_segments(kind: str, length: int, gen: torch.Generator) -> list[tuple[int, int]]:
    """The (start, end) position runs one sequence of ``length`` contributes for ``kind``."""
    if kind == "decode":
        return [(length - 1, length)]
    if kind == "prefill":
        start = int(torch.randint(0, length - 1, (1,), generator=gen))
        return [(start, length)]
    if kind == "compile":
        return [(0, length)]
    assert kind == "recompute", kind
    # Runs of 1..5 rows at sorted, separated random starts, then the last 3 rows (the question).
    cuts = sorted(set(torch.randint(0, max(length - 4, 1), (4,), generator=gen).tolist()))
    runs: list[tuple[int, int]] = []
    for c in cuts:
        end = min(c + int(torch.randint(1, 6, (1,), generator=gen)), length - 4)
        if c < end and (not runs or c > runs[-1][1]):
            runs.append((c, end))
    return runs + [(max(length - 3, 0), length)]


def make_batch(
    kinds: list[str],
    lengths: list[int],
    *,
    block_size: int,
    num_q_heads: int,
    num_kv_heads: int,
    head_dim: int,
    seed: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> PagedBatch:
    """One step with a sequence per (kind, length), pages drawn shuffled from one pool."""
    gen = torch.Generator().manual_seed(seed)
    pages_needed = [-(-n // block_size) for n in lengths]
    num_blocks = sum(pages_needed) + 3  # a few pages no sequence owns
    pool = torch.randperm(num_blocks, generator=gen).tolist()
    layouts, positions, slots = [], [], []
    for kind, length, n_pages in zip(kinds, lengths, pages_needed):
        block_ids = tuple(pool[:n_pages])
        pool = pool[n_pages:]
        for start, end in sequence_segments(kind, length, gen):
            layouts.append(SegmentLayout(end - start, end, block_ids))
            positions.extend(range(start, end))
            slots.extend(slot(block_ids, p, block_size) for p in range(start, end))
    device = torch.device(device)
    meta = build_metadata(layouts, positions, slots, block_size, device)
    kv_cache = torch.randn(num_blocks, 2, block_size, num_kv_heads, head_dim, generator=gen)
    q = torch.randn(len(positions), num_q_heads, head_dim, generator=gen)
    return PagedBatch(layouts, positions, slots, meta, kv_cache.to(device, dtype), q.to(device, dtype))


def visible_slots(layouts: list[SegmentLayout], block_size: int) -> list[list[int]]:
    """Per row, the cache slots it attends to, from the layouts alone (the contract's truth)."""
    rows = []
    for seg in layouts:
        for i in range(seg.num_rows):
            limit = seg.kv_len - seg.num_rows + i + 1
            rows.append([slot(seg.block_ids, p, block_size) for p in range(limit)])
    return rows


def paged_visible_slots(
    qo_indptr: torch.Tensor,
    kv_page_indptr: torch.Tensor,
    kv_page_indices: torch.Tensor,
    kv_last_page_len: torch.Tensor,
    page_size: int,
) -> list[list[int]]:
    """Per query row, the slots FlashInfer's paged wrappers read with a causal mask: request b
    has kv_len = (pages - 1) * page_size + last_page_len, and row i of its q_len rows sees KV
    positions < kv_len - q_len + i + 1 (bottom-right alignment)."""
    qo, page_indptr = qo_indptr.tolist(), kv_page_indptr.tolist()
    pages, last = kv_page_indices.tolist(), kv_last_page_len.tolist()
    rows = []
    for b in range(len(last)):
        table = pages[page_indptr[b] : page_indptr[b + 1]]
        assert 1 <= last[b] <= page_size, f"request {b}: last page length {last[b]}"
        kv_len = (len(table) - 1) * page_size + last[b]
        q_len = qo[b + 1] - qo[b]
        for i in range(q_len):
            limit = kv_len - q_len + i + 1
            rows.append([table[p // page_size] * page_size + p % page_size for p in range(limit)])
    return rows


def attend_slots(q: torch.Tensor, kv_cache: torch.Tensor, rows: list[list[int]], scale: float) -> torch.Tensor:
    """Dense attention, float64: row r attends over exactly the slots ``rows[r]``.

    Args:
        q: [N, Hq, D]; kv_cache: [num_blocks, 2, block_size, Hkv, D]; rows: N slot lists.

    Returns:
        [N, Hq, D] float64.
    """
    num_blocks, _, block_size, num_kv_heads, head_dim = kv_cache.shape
    flat = kv_cache.double().transpose(0, 1).reshape(2, num_blocks * block_size, num_kv_heads, head_dim)
    group = q.shape[1] // num_kv_heads
    k = flat[0].repeat_interleave(group, dim=1).transpose(0, 1)  # [Hq, num_slots, D]
    v = flat[1].repeat_interleave(group, dim=1).transpose(0, 1)
    mask = torch.zeros(len(rows), num_blocks * block_size, dtype=torch.bool, device=q.device)
    for r, visible in enumerate(rows):
        mask[r, visible] = True
    scores = torch.einsum("nhd,hsd->hns", q.double(), k) * scale
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.einsum("hns,hsd->nhd", scores.softmax(dim=-1), v)
