"""The reference attention backend: plain torch, CPU or GPU, one SDPA call per query segment.

Slow but obviously correct; every fast backend is tested against it. Decode segments (one row
each) are batched into one padded call so batch decoding does not pay a per-request loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.attention.base import AttentionBackend, AttentionMetadata


class TorchAttentionBackend(AttentionBackend):
    """Gathers each segment's KV from the pages and runs masked SDPA."""

    def plan(self, meta: AttentionMetadata) -> None:
        self.meta = meta
        qo = meta.qo_indptr_cpu
        pages = meta.kv_page_indices.long()
        # Per segment: rows, KV length, the page ids holding its KV.
        self._segments = [
            (qo[s], qo[s + 1], meta.kv_lens_cpu[s], pages[meta.kv_page_indptr_cpu[s] : meta.kv_page_indptr_cpu[s + 1]])
            for s in range(meta.num_segments)
        ]
        decode = [s for s, (lo, hi, _, _) in enumerate(self._segments) if hi - lo == 1]
        self._decode_ids = decode if len(decode) > 1 else []
        self._other_ids = [s for s in range(meta.num_segments) if s not in set(self._decode_ids)]
        if self._decode_ids:
            self._decode_plan = self._plan_decode(meta)

    def _plan_decode(self, meta: AttentionMetadata):
        """Padded page table + key mask for all single-row segments (built once per step)."""
        bs = meta.block_size
        segs = [self._segments[s] for s in self._decode_ids]
        max_pages = max(len(p) for _, _, _, p in segs)
        table = torch.zeros(len(segs), max_pages, dtype=torch.long)
        valid = torch.zeros(len(segs), max_pages * bs, dtype=torch.bool)
        for i, (_, _, kv_len, p) in enumerate(segs):
            table[i, : len(p)] = p.cpu()
            valid[i, :kv_len] = True
        device = meta.positions.device
        rows = torch.tensor([lo for lo, _, _, _ in segs], dtype=torch.long, device=device)
        return rows, table.to(device), valid.to(device)

    def forward(self, q: torch.Tensor, kv_cache: torch.Tensor) -> torch.Tensor:
        # q: [N, Hq, D]; kv_cache: [num_blocks, 2, block_size, Hkv, D]
        out = torch.empty_like(q)
        group = self.num_q_heads // self.num_kv_heads
        for s in self._other_ids:
            lo, hi, kv_len, pages = self._segments[s]
            kv = kv_cache[pages].transpose(0, 1).reshape(2, -1, self.num_kv_heads, self.head_dim)[:, :kv_len]
            k = kv[0].transpose(0, 1).repeat_interleave(group, dim=0)  # [Hq, kv_len, D]
            v = kv[1].transpose(0, 1).repeat_interleave(group, dim=0)
            num_q = hi - lo
            # Bottom-right causal: row i sees KV positions < kv_len - num_q + i + 1.
            mask = torch.ones(num_q, kv_len, dtype=torch.bool, device=q.device).tril(kv_len - num_q)
            o = F.scaled_dot_product_attention(
                q[lo:hi].transpose(0, 1), k.to(q.dtype), v.to(q.dtype), attn_mask=mask, scale=self.scale
            )
            out[lo:hi] = o.transpose(0, 1)
        if self._decode_ids:
            rows, table, valid = self._decode_plan
            b = rows.numel()
            kv = kv_cache[table]  # [B, max_pages, 2, bs, Hkv, D]
            kv = kv.permute(2, 0, 4, 1, 3, 5).reshape(2, b, self.num_kv_heads, -1, self.head_dim)
            k = kv[0].repeat_interleave(group, dim=1).to(q.dtype)  # [B, Hq, L, D]
            v = kv[1].repeat_interleave(group, dim=1).to(q.dtype)
            o = F.scaled_dot_product_attention(
                q[rows].unsqueeze(2), k, v, attn_mask=valid[:, None, None, :], scale=self.scale
            )  # [B, Hq, 1, D]
            out[rows] = o.squeeze(2)
        return out
