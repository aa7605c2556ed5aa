"""Host-side planning for the FlashInfer backend: the exact arrays its wrappers' ``plan()`` takes.

Pure torch, no flashinfer import: it runs and is tested on CPU. Every query segment of the step
(see :mod:`engine.attention.base`) becomes one FlashInfer "request" over the *same* page ids:

    segment s          ->  request s:  qo_len = qo_indptr[s+1] - qo_indptr[s]
    kv_lens[s]         ->  kv_len = (pages - 1) * page_size + last_page_len
    bottom-right causal ->  ``causal=True`` (FlashInfer aligns the causal diagonal to the bottom
                            right when qo_len < kv_len), so link-recompute runs at arbitrary
                            positions need no custom mask.

A step is split by segment length:

    rows (batch order):  [d][p p p p][d][p p]    d: a one-row segment (decode, or a 1-token run:
                                                    the same semantics) -> BatchDecode wrapper
                                                 p: a longer segment    -> BatchPrefill wrapper

Each part's rows are a :data:`RowSelection` of the batch: a slice when they are contiguous (a
free view), else an index tensor (one gather of ``q`` and one scatter of the output per layer).

The CSR arrays the wrappers read on the host (``qo_indptr``, ``kv_page_indptr``,
``kv_last_page_len``) are built from the metadata's host mirrors and stay on the host, so
planning never reads the device; ``kv_page_indices`` stays on the metadata's device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch

from engine.attention.base import AttentionMetadata

# Float scratch space shared by all wrappers of one backend (split-KV partial outputs); FlashInfer
# recommends 128 MiB, long prompts with many heads split further, so leave room.
FLOAT_WORKSPACE_BYTES = 256 * 1024 * 1024

RowSelection = Union[slice, torch.Tensor]  # slice, or [R] int64 row ids on the device


@dataclass(slots=True)
class PagedPlan:
    """The arguments of one wrapper's ``plan()`` call. ``B`` requests, ``P`` page entries.

    Attributes:
        qo_indptr: [B + 1] int32, host: rows of request b are ``qo_indptr[b]:qo_indptr[b+1]``
            of this part's (gathered) query tensor.
        kv_page_indptr: [B + 1] int32, host: request b's pages are
            ``kv_page_indices[kv_page_indptr[b]:kv_page_indptr[b+1]]``.
        kv_page_indices: [P] int32, on the metadata's device: block ids in position order.
        kv_last_page_len: [B] int32, host: valid slots in each request's last page (1..page_size).
        page_size: tokens per page.
    """

    qo_indptr: torch.Tensor
    kv_page_indptr: torch.Tensor
    kv_page_indices: torch.Tensor
    kv_last_page_len: torch.Tensor
    page_size: int

    @property
    def batch_size(self) -> int:
        return len(self.kv_last_page_len)

    @property
    def num_rows(self) -> int:
        return int(self.qo_indptr[-1])

    @property
    def is_decode(self) -> bool:
        """Every request has exactly one query row (the decode wrapper's contract)."""
        return self.num_rows == self.batch_size


@dataclass(slots=True)
class StepPlan:
    """One step split into a decode part and a prefill part (either may be absent).

    Attributes:
        decode: one-row segments, for ``BatchDecodeWithPagedKVCacheWrapper``.
        decode_rows: where the decode part's rows sit in the batch.
        prefill: the other segments, for ``BatchPrefillWithPagedKVCacheWrapper(causal=True)``.
        prefill_rows: where the prefill part's rows sit in the batch.
        num_rows: ``N``, rows of the whole step.
    """

    decode: PagedPlan | None
    decode_rows: RowSelection | None
    prefill: PagedPlan | None
    prefill_rows: RowSelection | None
    num_rows: int


def paged_plan(meta: AttentionMetadata, segment_ids: list[int]) -> PagedPlan:
    """The wrapper arrays for a subset of the step's segments, in the given order.

    Args:
        meta: the step's metadata (host mirrors are read; no device sync).
        segment_ids: segments to include (non-empty).
    """
    assert segment_ids, "a plan needs at least one segment"
    qo, kv_indptr, bs = meta.qo_indptr_cpu, meta.kv_page_indptr_cpu, meta.block_size
    qo_indptr, page_indptr, last_page_len = [0], [0], []
    page_positions: list[int] = []  # positions in meta.kv_page_indices, in output order
    for s in segment_ids:
        lo, hi = kv_indptr[s], kv_indptr[s + 1]
        kv_len = meta.kv_lens_cpu[s]
        assert hi - lo == -(-kv_len // bs), f"segment {s}: {hi - lo} pages for kv_len {kv_len}"
        qo_indptr.append(qo_indptr[-1] + qo[s + 1] - qo[s])
        page_indptr.append(page_indptr[-1] + hi - lo)
        last_page_len.append(kv_len - (hi - lo - 1) * bs)
        page_positions.extend(range(lo, hi))
    indices = meta.kv_page_indices
    first = page_positions[0]
    if page_positions == list(range(first, first + len(page_positions))):
        indices = indices[first : first + len(page_positions)]
    else:
        indices = indices[_to_device(page_positions, indices.device)]
    return PagedPlan(
        qo_indptr=torch.tensor(qo_indptr, dtype=torch.int32),
        kv_page_indptr=torch.tensor(page_indptr, dtype=torch.int32),
        kv_page_indices=indices,
        kv_last_page_len=torch.tensor(last_page_len, dtype=torch.int32),
        page_size=bs,
    )


def plan_step(meta: AttentionMetadata) -> StepPlan:
    """Split the step into one-row (decode) and longer (prefill) segments and plan both."""
    qo = meta.qo_indptr_cpu
    decode_ids = [s for s in range(meta.num_segments) if qo[s + 1] - qo[s] == 1]
    prefill_ids = [s for s in range(meta.num_segments) if qo[s + 1] - qo[s] > 1]
    device = meta.kv_page_indices.device
    return StepPlan(
        decode=paged_plan(meta, decode_ids) if decode_ids else None,
        decode_rows=_rows_of(qo, decode_ids, device) if decode_ids else None,
        prefill=paged_plan(meta, prefill_ids) if prefill_ids else None,
        prefill_rows=_rows_of(qo, prefill_ids, device) if prefill_ids else None,
        num_rows=meta.num_rows,
    )


def use_tensor_cores(num_q_heads: int, num_kv_heads: int) -> bool:
    """Decode on tensor cores when a KV head serves more than four query heads (wide GQA)."""
    return num_q_heads // num_kv_heads > 4


def _rows_of(qo_indptr: list[int], segment_ids: list[int], device: torch.device) -> RowSelection:
    """The batch rows of the given segments, in order: a slice when they are contiguous."""
    rows = [r for s in segment_ids for r in range(qo_indptr[s], qo_indptr[s + 1])]
    if rows == list(range(rows[0], rows[0] + len(rows))):
        return slice(rows[0], rows[0] + len(rows))
    return _to_device(rows, device)


def _to_device(values: list[int], device: torch.device) -> torch.Tensor:
    """An int64 index tensor on ``device`` (staged through pinned memory on CUDA)."""
    host = torch.tensor(values, dtype=torch.int64)
    if device.type == "cuda":
        host = host.pin_memory()
    return host.to(device, non_blocking=True)
