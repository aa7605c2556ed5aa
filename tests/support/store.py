"""Helpers of the chunk-store tests: deterministic KV tensors, keys, and a store config over the
test S3 server."""

from __future__ import annotations

import torch

from documents.registry import DocumentRegistry
from kvstore.blobs import MemoryBlobs
from kvstore.builder import open_blobs
from kvstore.config import StoreConfig
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


S3_FAST = dict(s3_region="us-east-1", s3_connect_timeout_s=1.0, s3_read_timeout_s=5.0, s3_max_attempts=2)


def s3_config(s3_server, bucket: str, **overrides) -> StoreConfig:
    """A store config over ``s3://bucket/store`` on the test S3 server, no Ray tier."""
    fields = dict(
        persistent=f"s3://{bucket}/store", s3_endpoint_url=s3_server.endpoint_url, object_store_bytes=0, **S3_FAST
    )
    fields.update(overrides)
    return StoreConfig(**fields)


def open_registry(config: StoreConfig, model_fingerprint: str, tenant: str | None = None) -> DocumentRegistry:
    """``tenant``'s document registry at ``config``'s persistent location (in process memory
    when there is none), as the ingress opens it."""
    return DocumentRegistry(open_blobs(config) or MemoryBlobs(), model_fingerprint, tenant)
