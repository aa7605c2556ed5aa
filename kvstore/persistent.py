"""The persistent tier: stored chunks (codec-framed) as objects in a BlobStore (S3 or a directory)."""

from __future__ import annotations

import torch

from kvstore import codec
from kvstore.blobs import BlobStore
from kvstore.dir_budget import DirectoryBudget
from kvstore.keys import ChunkKey, chunk_object_name, key_from_object_name
from kvstore.tensors import dtype_name, payload_view, tensor_from_payload
from kvstore.tier import Evicted, PutResult, Tier


class BlobTier(Tier):
    """Chunks under ``chunks/<key[:2]>/<key>.kv``; every read checks header and checksum.

    With a ``budget`` (a ``dir://`` store's), each put first makes room by deleting the least
    recently used chunk files, and each hit marks its file used.
    """

    def __init__(self, name: str, blobs: BlobStore, model_fingerprint: str,
                 budget: DirectoryBudget | None = None) -> None:
        self.name = name
        self.blobs = blobs
        self.model_fingerprint = model_fingerprint
        self.budget = budget

    def get(self, key: ChunkKey) -> torch.Tensor | None:
        name = chunk_object_name(key)
        buf = self.blobs.get(name)
        if buf is None:
            return None
        header, payload = codec.decode(buf, key, self.model_fingerprint)
        if self.budget is not None:
            self.budget.touch(name)
        return tensor_from_payload(payload, header.dtype, header.shape)

    def put(self, key: ChunkKey, kv: torch.Tensor) -> PutResult:
        encoded = codec.encode(key, self.model_fingerprint, dtype_name(kv), tuple(kv.shape), payload_view(kv))
        evicted = []
        if self.budget is not None:
            names = self.budget.admit(len(encoded.head) + encoded.payload.nbytes)
            evicted = [Evicted(k, 0, None) for k in map(key_from_object_name, names) if k is not None]
        self.blobs.put(chunk_object_name(key), [encoded.head, encoded.payload])
        return PutResult(True, evicted)

    def contains(self, key: ChunkKey) -> bool:
        return self.blobs.exists(chunk_object_name(key))

    def delete(self, key: ChunkKey) -> None:
        self.blobs.delete(chunk_object_name(key))
