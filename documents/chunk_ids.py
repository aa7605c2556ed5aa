"""The token ids of registered chunks, stored by chunk key next to the chunks' KV.

A document registered through the documents API is later referenced by id alone. The chunk
KV may have been evicted from every tier by then, and linking needs the ids anyway (the first
k tokens of a chunk are recomputed, ``full`` recomputes all), so the ids are kept too:

    chunk-ids/<key[:2]>/<key>.ids     little-endian int32 token ids

A chunk key is a hash of (model fingerprint, ids, cache scope), so a read is verified by
recomputing the key: ids that do not hash to their key (a torn write, another model's or
scope's file) read as absent. One store serves one scope (a tenant's, or none).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kvstore.blobs import BlobStore
from kvstore.keys import ChunkKey, chunk_key, is_chunk_key


def _name(key: ChunkKey) -> str:
    if not is_chunk_key(key):
        raise ValueError(f"not a chunk key: {key!r}")
    return f"chunk-ids/{key[:2]}/{key}.ids"


class ChunkIdStore:
    """put / get of chunk token ids by chunk key (backend failures raise ``TierError``)."""

    def __init__(self, blobs: BlobStore, model_fingerprint: str, scope: str | None = None) -> None:
        self._blobs = blobs
        self.model_fingerprint = model_fingerprint
        self.scope = scope

    def put(self, token_ids: Sequence[int]) -> ChunkKey:
        """Store a chunk's ids (idempotent) and return its key."""
        key = chunk_key(self.model_fingerprint, token_ids, self.scope)
        name = _name(key)
        if not self._blobs.exists(name):
            self._blobs.put(name, [np.asarray(token_ids, dtype="<i4").tobytes()])
        return key

    def get(self, key: ChunkKey) -> tuple[int, ...] | None:
        """The chunk's ids, or None when absent or not matching the key."""
        buf = self._blobs.get(_name(key))
        if buf is None or buf.nbytes % 4:
            return None
        ids = tuple(int(t) for t in buf.view("<i4"))
        if not ids or chunk_key(self.model_fingerprint, ids, self.scope) != key:
            return None
        return ids
