"""Small helpers shared by the chunk-store tests: deterministic KV tensors and keys."""

from __future__ import annotations

import torch

from kvstore.keys import ChunkKey, chunk_key

FP = "test-model/fp32/abc123"

_INT_CARRIER = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}


def make_kv(
    seed: int,
    dtype: torch.dtype = torch.float32,
    num_tokens: int = 5,
    num_layers: int = 2,
    num_kv_heads: int = 2,
    head_dim: int = 8,
) -> torch.Tensor:
    """``[num_layers, 2, num_tokens, num_kv_heads, head_dim]`` of random *bit patterns* (NaNs,
    infinities and subnormals included), so only a bit-exact path reproduces them."""
    g = torch.Generator().manual_seed(seed)
    carrier = _INT_CARRIER[dtype]
    info = torch.iinfo(carrier)
    bits = torch.randint(
        info.min, info.max, (num_layers, 2, num_tokens, num_kv_heads, head_dim), generator=g, dtype=torch.int64
    )
    return bits.to(carrier).view(dtype)


def same_bits(a: torch.Tensor | None, b: torch.Tensor) -> bool:
    """Same dtype, shape and every byte."""
    if a is None or a.dtype != b.dtype or a.shape != b.shape:
        return False
    carrier = _INT_CARRIER[b.dtype]
    return torch.equal(a.contiguous().view(carrier), b.contiguous().view(carrier))


def key(i: int, fp: str = FP) -> ChunkKey:
    return chunk_key(fp, [i, i + 1, i + 2])
