"""The persistent tier: stored chunks (codec-framed) as objects in a BlobStore (S3 or a directory)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from kvstore import codec
from kvstore.blobs import BlobStore
from kvstore.keys import ChunkKey, chunk_object_name
from kvstore.tensors import dtype_name, payload_view, tensor_from_payload
from kvstore.tier import PutResult, Tier


class BlobTier(Tier):
    """Chunks under ``chunks/<key[:2]>/<key>.kv``; every read checks header and checksum."""

    def __init__(self, name: str, blobs: BlobStore, model_fingerprint: str) -> None:
        self.name = name
        self.blobs = blobs
        self.model_fingerprint = model_fingerprint

    def get(self, key: ChunkKey) -> torch.Tensor | None:
        buf = self.blobs.get(chunk_object_name(key))
        if buf is None:
            return None
        header, payload = codec.decode(buf, key, self.model_fingerprint)
        return tensor_from_payload(payload, header.dtype, header.shape)

    def put(self, key: ChunkKey, kv: torch.Tensor) -> PutResult:
        encoded = codec.encode(key, self.model_fingerprint, dtype_name(kv), tuple(kv.shape), payload_view(kv))
        self.blobs.put(chunk_object_name(key), [encoded.head, encoded.payload])
        return PutResult(True, [])

    def contains(self, key: ChunkKey) -> bool:
        return self.blobs.exists(chunk_object_name(key))

    def delete(self, key: ChunkKey) -> None:
        self.blobs.delete(chunk_object_name(key))

    def delete_many(self, keys: Sequence[ChunkKey]) -> None:
        self.blobs.delete_many([chunk_object_name(k) for k in keys])
