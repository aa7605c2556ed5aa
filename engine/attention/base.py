"""The attention backend interface: plan once per step, run per layer.

A step's query rows (flattened over all sequences, ``N`` rows) are grouped into ``S`` *query
segments*. A query segment is a contiguous run of absolute positions of one sequence; its rows
attend over that sequence's paged KV with bottom-right causal alignment:

    KV positions of the sequence:   0 1 2 3 4 5 6 7 8 9        kv_len = 10
    query run (q = 3):                          7 8 9
    row i of the run sees KV positions < kv_len - q + i + 1   (row 0 -> <8, row 2 -> <10)

so a run cut at its last position ``p`` (``kv_len = p + 1``) means "attend to everything at or
before me". Decode rows are runs of length 1; a prefill piece is one run; a link-recompute pass is
several runs (the first k tokens of each chunk, the question) over the *same* page table. Every
row's fresh K/V is written into the pages (at ``slot_mapping``) before attention runs, so rows see
each other's fresh K/V and cached K/V elsewhere.

Paged KV cache, one tensor per layer: ``[num_blocks, 2, block_size, num_kv_heads, head_dim]``
(FlashInfer's "NHD" layout; index 0 of dim 1 is K after RoPE, 1 is V). Slot ``s`` is
``(block s // block_size, offset s % block_size)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass(slots=True)
class AttentionMetadata:
    """One step's attention layout; built once per step on the host, moved to the device.

    Shapes: ``N`` query rows, ``S`` query segments, ``P`` page-table entries in total.
    """

    positions: torch.Tensor  # [N] int64: absolute position of each row (for RoPE)
    slot_mapping: torch.Tensor  # [N] int64: cache slot receiving each row's fresh K/V
    qo_indptr: torch.Tensor  # [S + 1] int32: rows of segment s are qo_indptr[s]:qo_indptr[s+1]
    kv_lens: torch.Tensor  # [S] int32: KV length seen by each segment's last row
    kv_page_indptr: torch.Tensor  # [S + 1] int32: pages of segment s are kv_page_indices[indptr[s]:indptr[s+1]]
    kv_page_indices: torch.Tensor  # [P] int32: block ids, in position order
    kv_last_page_len: torch.Tensor  # [S] int32: valid slots in each segment's last page (1..block_size)
    block_size: int
    # Host mirrors of the CSR arrays, for backends that plan on the host (no device sync).
    qo_indptr_cpu: list[int]
    kv_lens_cpu: list[int]
    kv_page_indptr_cpu: list[int]
    kv_page_indices_cpu: torch.Tensor  # [P] int64

    @property
    def num_rows(self) -> int:
        return self.qo_indptr_cpu[-1]

    @property
    def num_segments(self) -> int:
        return len(self.kv_lens_cpu)


@dataclass(frozen=True, slots=True)
class SegmentLayout:
    """One query segment as the planner receives it (host side).

    Attributes:
        num_rows: query rows of this segment (the run length q).
        kv_len: positions 0..kv_len-1 of the sequence are visible to the last row.
        block_ids: the sequence's page table (at least ceil(kv_len / block_size) entries).
    """

    num_rows: int
    kv_len: int
    block_ids: tuple[int, ...]


def build_metadata(
    layouts: list[SegmentLayout],
    positions: torch.Tensor | list[int],
    slot_mapping: torch.Tensor | list[int],
    block_size: int,
    device: torch.device,
) -> AttentionMetadata:
    """Pack per-segment layouts into CSR metadata (one host->device copy per array).

    ``positions`` and ``slot_mapping``: [N] int64 (host tensors or lists), one per row.
    """
    assert len(positions) == len(slot_mapping) == sum(s.num_rows for s in layouts), (
        "positions, slot_mapping and the segments' rows must agree"
    )
    qo_indptr = [0]
    kv_page_indptr = [0]
    kv_lens: list[int] = []
    page_ids: list[int] = []
    last_page_len: list[int] = []
    for seg in layouts:
        assert 1 <= seg.num_rows <= seg.kv_len, f"bad segment {seg}"
        num_pages = -(-seg.kv_len // block_size)
        assert len(seg.block_ids) >= num_pages, f"segment needs {num_pages} pages, has {len(seg.block_ids)}"
        qo_indptr.append(qo_indptr[-1] + seg.num_rows)
        kv_lens.append(seg.kv_len)
        page_ids.extend(seg.block_ids[:num_pages])
        kv_page_indptr.append(len(page_ids))
        last_page_len.append(seg.kv_len - (num_pages - 1) * block_size)

    pages = torch.tensor(page_ids, dtype=torch.int64)

    def dev(values: torch.Tensor | list[int], dtype: torch.dtype) -> torch.Tensor:
        host = torch.as_tensor(values, dtype=dtype)
        if device.type == "cuda":
            host = host.pin_memory()
        return host.to(device, non_blocking=True)

    return AttentionMetadata(
        positions=dev(positions, torch.int64),
        slot_mapping=dev(slot_mapping, torch.int64),
        qo_indptr=dev(qo_indptr, torch.int32),
        kv_lens=dev(kv_lens, torch.int32),
        kv_page_indptr=dev(kv_page_indptr, torch.int32),
        kv_page_indices=dev(pages, torch.int32),
        kv_last_page_len=dev(last_page_len, torch.int32),
        block_size=block_size,
        qo_indptr_cpu=qo_indptr,
        kv_lens_cpu=kv_lens,
        kv_page_indptr_cpu=kv_page_indptr,
        kv_page_indices_cpu=pages,
    )


def write_kv(kv_cache: torch.Tensor, slot_mapping: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Scatter fresh K/V rows into one layer's paged cache.

    Args:
        kv_cache: [num_blocks, 2, block_size, num_kv_heads, head_dim]
        slot_mapping: [N] int64
        k, v: [N, num_kv_heads, head_dim] (K already rotated)
    """
    block_size = kv_cache.shape[2]
    blocks = slot_mapping // block_size
    offsets = slot_mapping % block_size
    kv_cache[blocks, 0, offsets] = k.to(kv_cache.dtype)
    kv_cache[blocks, 1, offsets] = v.to(kv_cache.dtype)


class AttentionBackend(ABC):
    """Paged attention over a step's query segments.

    Construct once per engine; call :meth:`plan` once per step (or per row subset, when a link
    policy drops rows mid-forward), then :meth:`forward` once per layer.
    """

    def __init__(self, num_q_heads: int, num_kv_heads: int, head_dim: int, scale: float):
        assert num_q_heads % num_kv_heads == 0, "query heads must be a multiple of KV heads"
        self.num_q_heads = num_q_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = scale

    @abstractmethod
    def plan(self, meta: AttentionMetadata) -> None:
        """Prepare for this step's layout (no per-layer host work after this)."""

    @abstractmethod
    def graph_decoder(self, batch_size: int, max_pages: int) -> AttentionBackend:
        """A backend for decode steps of exactly ``batch_size`` one-row segments over at most
        ``max_pages`` page entries in all, planned into fixed buffers so that a CUDA graph may
        capture its :meth:`forward` (:mod:`engine.decode_graphs`)."""

    @abstractmethod
    def forward(self, q: torch.Tensor, kv_cache: torch.Tensor) -> torch.Tensor:
        """Attention for the planned rows.

        Args:
            q: [N, num_q_heads, head_dim], already rotated.
            kv_cache: this layer's [num_blocks, 2, block_size, num_kv_heads, head_dim], with
                the rows' fresh K/V already written.

        Returns:
            [N, num_q_heads, head_dim]
        """
