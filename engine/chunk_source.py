"""Where the engine gets chunk KV it does not hold: the seam the tiered store plugs into.

A stored chunk's KV is one tensor ``[num_layers, 2, num_tokens, num_kv_heads, head_dim]``:
index 0 of dim 1 is K *before* RoPE ("NoPE K"), index 1 is V, rows are the chunk's own tokens
(the BOS it was compiled behind is dropped). The bytes do not depend on where the chunk is later
placed, so one copy serves every request.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from kvstore.keys import ChunkKey
from kvstore.tier import ChunkHit  # (kv [num_layers, 2, num_tokens, Hkv, D], tier name)

__all__ = ["ChunkHit", "ChunkSource"]


@runtime_checkable
class ChunkSource(Protocol):
    """Get/put chunk KV by key. Implementations never raise on a backend failure: a failed or
    corrupt read is a miss (``None``), a failed write is dropped and counted."""

    def get_chunk(self, key: ChunkKey) -> ChunkHit | None: ...

    def put_chunk(self, key: ChunkKey, kv: torch.Tensor) -> None: ...
