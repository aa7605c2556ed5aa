"""The reference attention backend: plain torch, CPU or GPU, a few SDPA calls per step.

Obviously correct and reasonably quick on a CPU; every fast backend is tested against it.

Planning splits the step's query segments in two kinds:

- *Groups*: consecutive segments whose page tables are prefixes of one another (the runs of one
  sequence: a prefill piece, a link-recompute pass's runs, CacheBlend's scattered rows) share
  one call over the longest page table, each row masked to the KV its position may see. Once per
  layer, the pages of every group are gathered in one copy per K and V, and each group attends
  over its own contiguous range of them.
- *Decode buckets*: lone one-row segments (decode rows of different sequences), sorted by KV
  length and cut into buckets of rows close in length (:func:`buckets_of`); each bucket is one
  padded SDPA call over its own gathered pages (one call per row costs more in host work than
  that padding, one call for rows of very different lengths more in padding: measured on a CPU).

Pages are gathered with ``index_select`` (whole pages), several times faster on a CPU than
advanced indexing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.attention.base import AttentionBackend, AttentionMetadata

# A decode row joins the bucket of the longer rows before it when padding it to that bucket's
# longest row adds at most this many KV slots, or a quarter of that longest row: less padding
# than a call of its own costs in host work on a CPU.
PAD_SLOTS = 256


def buckets_of(lengths: list[int]) -> list[list[int]]:
    """Indices of ``lengths``, longest first, cut into buckets: an index joins the current
    bucket when its length is within ``max(PAD_SLOTS, longest / 4)`` of the bucket's longest."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    for i in order:
        longest = lengths[out[-1][0]] if out else 0
        if out and longest - lengths[i] <= max(PAD_SLOTS, longest // 4):
            out[-1].append(i)
        else:
            out.append([i])
    return out


@dataclass(slots=True)
class _Group:
    rows: slice  # the group's query rows in the batch
    kv: slice  # its KV slots among the gathered group pages' slots (positions 0..kv_len-1)
    visible: torch.Tensor | None  # [1, 1, R, kv_len] bool: which KV slots each row sees; None: all
    causal: bool  # row i sees slots <= i over kv_len == R slots (a fresh prefill)


@dataclass(slots=True)
class _Bucket:
    rows: torch.Tensor  # [B] int64: the bucket's decode rows in the batch
    pages: torch.Tensor  # [B * W] int64: each row's page table padded to W pages, row after row
    visible: torch.Tensor | None  # [B, 1, 1, W * block_size] bool: each row's real KV; None: one full row
    kv_len: int  # slots read per row: W * block_size, or the one row's KV length


class TorchAttentionBackend(AttentionBackend):
    """Gathers the step's pages once per layer and runs SDPA per group and per decode bucket."""

    def plan(self, meta: AttentionMetadata) -> None:
        qo, indptr, kv_lens = meta.qo_indptr_cpu, meta.kv_page_indptr_cpu, meta.kv_lens_cpu
        pages_cpu = meta.kv_page_indices_cpu
        device = meta.positions.device
        runs: list[list[int]] = []  # consecutive segments over one page table
        for s in range(meta.num_segments):
            if runs and self._extends(runs[-1][-1], s, meta, pages_cpu):
                runs[-1].append(s)
            else:
                runs.append([s])
        decode: list[int] = []  # lone one-row segments
        groups, tables, first_slot = [], [], 0
        for segs in runs:
            if len(segs) == 1 and qo[segs[0] + 1] - qo[segs[0]] == 1:
                decode.append(segs[0])
                continue
            longest = max(segs, key=lambda s: indptr[s + 1] - indptr[s])
            tables.append(pages_cpu[indptr[longest] : indptr[longest + 1]])
            kv_len = max(kv_lens[s] for s in segs)
            groups.append(self._group(segs, meta, slice(first_slot, first_slot + kv_len), device))
            first_slot += len(tables[-1]) * meta.block_size
        self._groups = groups
        self._pages = torch.cat(tables).to(device) if tables else None  # [P] the groups' pages
        self._buckets = [self._bucket([decode[i] for i in b], meta, device)
                         for b in buckets_of([kv_lens[s] for s in decode])]

    def graph_decoder(self, batch_size: int, max_pages: int) -> TorchAttentionBackend:
        """A fresh instance: it plans on the host per step, so decode graphs replay it eagerly
        (a CUDA graph cannot capture its per-group loop)."""
        return TorchAttentionBackend(self.num_q_heads, self.num_kv_heads, self.head_dim, self.scale)

    @staticmethod
    def _extends(prev: int, s: int, meta: AttentionMetadata, pages: torch.Tensor) -> bool:
        """Segment s continues prev's rows and one page table is a prefix of the other."""
        if s != prev + 1:
            return False
        indptr = meta.kv_page_indptr_cpu
        a, b = pages[indptr[prev] : indptr[prev + 1]], pages[indptr[s] : indptr[s + 1]]
        n = min(len(a), len(b))
        return bool(torch.equal(a[:n], b[:n]))

    @staticmethod
    def _group(segs: list[int], meta: AttentionMetadata, kv: slice, device: torch.device) -> _Group:
        qo, kv_lens = meta.qo_indptr_cpu, meta.kv_lens_cpu
        rows = slice(qo[segs[0]], qo[segs[-1] + 1])
        kv_len = kv.stop - kv.start
        if len(segs) == 1 and rows.stop - rows.start == kv_len:
            # Positions 0..R-1 over exactly R slots: plain causal attention, no mask needed.
            return _Group(rows, kv, None, True)
        # Row i of a q-row segment with KV length L sees slots < L - q + i + 1.
        limits = torch.cat([torch.arange(kv_lens[s] - (qo[s + 1] - qo[s]) + 1, kv_lens[s] + 1) for s in segs])
        visible = torch.arange(kv_len)[None, :] < limits[:, None]
        return _Group(rows, kv, visible[None, None].to(device), False)

    @staticmethod
    def _bucket(segs: list[int], meta: AttentionMetadata, device: torch.device) -> _Bucket:
        """One padded call over decode segments ``segs`` (longest first)."""
        indptr, kv_lens, bs = meta.kv_page_indptr_cpu, meta.kv_lens_cpu, meta.block_size
        pages = meta.kv_page_indices_cpu
        width = indptr[segs[0] + 1] - indptr[segs[0]]
        table = torch.zeros(len(segs), width, dtype=torch.int64)  # padding reads page 0, masked out
        for j, s in enumerate(segs):
            table[j, : indptr[s + 1] - indptr[s]] = pages[indptr[s] : indptr[s + 1]]
        rows = torch.tensor([meta.qo_indptr_cpu[s] for s in segs], dtype=torch.int64)
        if len(segs) == 1:
            return _Bucket(rows.to(device), table.flatten().to(device), None, kv_lens[segs[0]])
        lengths = torch.tensor([kv_lens[s] for s in segs])
        visible = torch.arange(width * bs)[None, :] < lengths[:, None]
        return _Bucket(rows.to(device), table.flatten().to(device), visible[:, None, None].to(device), width * bs)

    def _gather(self, kv_cache: torch.Tensor, pages: torch.Tensor, dtype: torch.dtype):
        """K and V of ``pages`` [P]: each [P * block_size, Hkv, D]."""
        shape = (-1, self.num_kv_heads, self.head_dim)
        k = kv_cache.select(1, 0).index_select(0, pages).view(shape)
        v = kv_cache.select(1, 1).index_select(0, pages).view(shape)
        return k.to(dtype), v.to(dtype)

    def forward(self, q: torch.Tensor, kv_cache: torch.Tensor) -> torch.Tensor:
        # q: [N, Hq, D]; kv_cache: [num_blocks, 2, block_size, Hkv, D]
        out = torch.empty_like(q)
        gqa = self.num_q_heads != self.num_kv_heads
        if self._groups:
            k_all, v_all = self._gather(kv_cache, self._pages, q.dtype)
            for g in self._groups:
                o = F.scaled_dot_product_attention(
                    q[g.rows].transpose(0, 1)[None],  # [1, Hq, R, D]
                    k_all[g.kv].transpose(0, 1)[None],  # [1, Hkv, L, D]
                    v_all[g.kv].transpose(0, 1)[None],
                    attn_mask=g.visible, is_causal=g.causal, scale=self.scale, enable_gqa=gqa)
                out[g.rows] = o[0].transpose(0, 1)
        for b in self._buckets:
            k, v = self._gather(kv_cache, b.pages, q.dtype)
            num_rows = len(b.rows)
            o = F.scaled_dot_product_attention(
                q[b.rows][:, :, None],  # [B, Hq, 1, D]
                k.view(num_rows, -1, self.num_kv_heads, self.head_dim)[:, : b.kv_len].transpose(1, 2),  # [B, Hkv, L, D]
                v.view(num_rows, -1, self.num_kv_heads, self.head_dim)[:, : b.kv_len].transpose(1, 2),
                attn_mask=b.visible, scale=self.scale, enable_gqa=gqa)
            out[b.rows] = o[:, :, 0]
        return out
