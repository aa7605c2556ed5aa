"""The reference attention backend: plain torch, CPU or GPU, one SDPA call per group of rows.

Obviously correct and reasonably quick on a CPU; every fast backend is tested against it.

Planning groups the step's query segments: consecutive segments whose page tables are prefixes
of one another (the runs of one sequence: a prefill piece, a link-recompute pass's runs,
CacheBlend's scattered rows, or one decode row) form one group over the longest page table,
each row masked to the KV its position may see. Once per layer, the pages of every group are
gathered in one copy per K and V (exactly the pages the groups use, no padding to the longest
sequence), and each group attends over its own contiguous range of them.

A decode row is a group of its own: it attends over exactly its KV (one padded call over
rows of different lengths pays for the padding more than it saves in calls, measured on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.attention.base import AttentionBackend, AttentionMetadata


@dataclass(slots=True)
class _Group:
    rows: slice  # the group's query rows in the batch
    kv: slice  # its KV slots among the gathered pages' slots (positions 0..kv_len-1)
    visible: torch.Tensor | None  # [1, 1, R, kv_len] bool: which KV slots each row sees; None: all
    causal: bool  # row i sees slots <= i over kv_len == R slots (a fresh prefill)


class TorchAttentionBackend(AttentionBackend):
    """Gathers the step's pages once per layer and runs SDPA per group."""

    def plan(self, meta: AttentionMetadata) -> None:
        indptr, kv_lens = meta.kv_page_indptr_cpu, meta.kv_lens_cpu
        pages_cpu = meta.kv_page_indices_cpu
        device = meta.positions.device
        runs: list[list[int]] = []  # consecutive segments over one page table
        for s in range(meta.num_segments):
            if runs and self._extends(runs[-1][-1], s, meta, pages_cpu):
                runs[-1].append(s)
            else:
                runs.append([s])
        groups, tables, first_slot = [], [], 0
        for segs in runs:
            longest = max(segs, key=lambda s: indptr[s + 1] - indptr[s])
            tables.append(pages_cpu[indptr[longest] : indptr[longest + 1]])
            kv_len = max(kv_lens[s] for s in segs)
            groups.append(self._group(segs, meta, slice(first_slot, first_slot + kv_len), device))
            first_slot += len(tables[-1]) * meta.block_size
        self._pages = torch.cat(tables).to(device)  # [P] the pages of every group, group by group
        self._groups = groups

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
        num_rows = rows.stop - rows.start
        if len(segs) == 1 and kv_lens[segs[0]] == kv_len:
            if num_rows == 1:  # one decode row: it sees every slot
                return _Group(rows, kv, None, False)
            if num_rows == kv_len:  # positions 0..R-1 over exactly R slots: plain causal attention
                return _Group(rows, kv, None, True)
        # Row i of a q-row segment with KV length L sees slots < L - q + i + 1.
        limits = torch.cat([torch.arange(kv_lens[s] - (qo[s + 1] - qo[s]) + 1, kv_lens[s] + 1) for s in segs])
        visible = torch.arange(kv_len)[None, :] < limits[:, None]
        return _Group(rows, kv, visible[None, None].to(device), False)

    def forward(self, q: torch.Tensor, kv_cache: torch.Tensor) -> torch.Tensor:
        # q: [N, Hq, D]; kv_cache: [num_blocks, 2, block_size, Hkv, D]
        k_all = kv_cache[self._pages, 0].view(-1, self.num_kv_heads, self.head_dim).to(q.dtype)  # [P * bs, Hkv, D]
        v_all = kv_cache[self._pages, 1].view(-1, self.num_kv_heads, self.head_dim).to(q.dtype)
        out = torch.empty_like(q)
        gqa = self.num_q_heads != self.num_kv_heads
        for g in self._groups:
            o = F.scaled_dot_product_attention(
                q[g.rows].transpose(0, 1)[None],  # [1, Hq, R, D]
                k_all[g.kv].transpose(0, 1)[None],  # [1, Hkv, L, D]
                v_all[g.kv].transpose(0, 1)[None],
                attn_mask=g.visible, is_causal=g.causal, scale=self.scale, enable_gqa=gqa)
            out[g.rows] = o[0].transpose(0, 1)
        return out
