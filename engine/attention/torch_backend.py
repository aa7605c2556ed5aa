"""The reference attention backend: plain torch, CPU or GPU, dense masks per group of rows.

Obviously correct and reasonably quick on a CPU; every fast backend is tested against it.

Planning groups the step's query segments so each group is one SDPA call:
- consecutive segments whose page tables are prefixes of one another (the runs of one
  sequence: a prefill piece, a link-recompute pass's runs, CacheBlend's scattered rows) share
  one call over the longest page table, each row masked to the KV its position may see;
- the remaining single-row segments (decode rows of different sequences) share one padded
  call, each row over its own page table.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.attention.base import AttentionBackend, AttentionMetadata


@dataclass(slots=True)
class _Group:
    rows: slice | torch.Tensor  # the group's query rows in the batch
    pages: torch.Tensor  # [B, max_pages] int64 page table(s)
    visible: torch.Tensor | None  # [B, R, max_pages * block_size] bool: which KV slots each row sees
    kv_len: int  # KV slots used (the last page may be partly filled)
    causal: bool  # visible is exactly "row i sees slots <= i" over kv_len == R slots (a fresh prefill)


class TorchAttentionBackend(AttentionBackend):
    """Gathers KV from the pages once per group and runs masked SDPA."""

    def plan(self, meta: AttentionMetadata) -> None:
        qo, indptr = meta.qo_indptr_cpu, meta.kv_page_indptr_cpu
        pages_cpu = meta.kv_page_indices.cpu().long()
        device = meta.positions.device
        bs = meta.block_size
        runs: list[list[int]] = []  # consecutive segments over one page table
        for s in range(meta.num_segments):
            if runs and self._extends(runs[-1][-1], s, meta, pages_cpu):
                runs[-1].append(s)
            else:
                runs.append([s])
        # Lone single-row segments (decode rows of different sequences) share one padded call.
        singles = [r[0] for r in runs if len(r) == 1 and qo[r[0] + 1] - qo[r[0]] == 1]
        lone = set(singles) if len(singles) > 1 else set()
        self._groups = [self._plan_run(g, meta, pages_cpu, device) for g in runs if g[0] not in lone]
        if lone:
            pages = [pages_cpu[indptr[s] : indptr[s + 1]] for s in singles]
            width = max(len(p) for p in pages)
            table = torch.zeros(len(singles), width, dtype=torch.long)
            visible = torch.zeros(len(singles), 1, width * bs, dtype=torch.bool)
            for i, (s, p) in enumerate(zip(singles, pages)):
                table[i, : len(p)] = p
                visible[i, 0, : meta.kv_lens_cpu[s]] = True
            rows = torch.tensor([qo[s] for s in singles], dtype=torch.long, device=device)
            self._groups.append(_Group(rows, table.to(device), visible.to(device), width * bs, False))

    @staticmethod
    def _extends(prev: int, s: int, meta: AttentionMetadata, pages: torch.Tensor) -> bool:
        """Segment s continues prev's rows and one page table is a prefix of the other."""
        if s != prev + 1:
            return False
        indptr = meta.kv_page_indptr_cpu
        a, b = pages[indptr[prev] : indptr[prev + 1]], pages[indptr[s] : indptr[s + 1]]
        n = min(len(a), len(b))
        return bool(torch.equal(a[:n], b[:n]))

    def _plan_run(self, segs: list[int], meta: AttentionMetadata, pages: torch.Tensor, device) -> _Group:
        qo, indptr, bs = meta.qo_indptr_cpu, meta.kv_page_indptr_cpu, meta.block_size
        longest = max(segs, key=lambda s: indptr[s + 1] - indptr[s])
        table = pages[indptr[longest] : indptr[longest + 1]]
        # Row i of a q-row segment with KV length L sees slots < L - q + i + 1.
        limits = torch.cat([
            torch.arange(meta.kv_lens_cpu[s] - (qo[s + 1] - qo[s]) + 1, meta.kv_lens_cpu[s] + 1) for s in segs
        ])
        rows = slice(qo[segs[0]], qo[segs[-1] + 1])
        kv_len = max(meta.kv_lens_cpu[s] for s in segs)
        if len(segs) == 1 and limits[0] == 1 and kv_len == len(limits):
            # Positions 0..R-1 over exactly R slots: plain causal attention, no mask needed.
            return _Group(rows, table[None].to(device), None, kv_len, True)
        visible = torch.arange(kv_len)[None, :] < limits[:, None]
        return _Group(rows, table[None].to(device), visible[None].to(device), kv_len, False)

    def forward(self, q: torch.Tensor, kv_cache: torch.Tensor) -> torch.Tensor:
        # q: [N, Hq, D]; kv_cache: [num_blocks, 2, block_size, Hkv, D]
        out = torch.empty_like(q)
        for g in self._groups:
            b = g.pages.shape[0]
            kv = kv_cache[g.pages]  # [B, width, 2, bs, Hkv, D]
            kv = kv.permute(2, 0, 4, 1, 3, 5).reshape(2, b, self.num_kv_heads, -1, self.head_dim)
            k = kv[0, :, :, : g.kv_len].to(q.dtype)  # [B, Hkv, L, D]
            v = kv[1, :, :, : g.kv_len].to(q.dtype)
            if isinstance(g.rows, slice):
                qg = q[g.rows].transpose(0, 1)[None]  # [1, Hq, R, D]
            else:
                qg = q[g.rows][:, :, None, :]  # [B, Hq, 1, D]
            mask = None if g.causal else g.visible[:, None]
            o = F.scaled_dot_product_attention(qg, k, v, attn_mask=mask, is_causal=g.causal, scale=self.scale,
                                               enable_gqa=self.num_q_heads != self.num_kv_heads)
            out[g.rows] = o[0].transpose(0, 1) if isinstance(g.rows, slice) else o[:, :, 0]
        return out
