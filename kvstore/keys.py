"""Chunk keys: the content address of a chunk's KV.

A key hashes (KV layout version, model fingerprint, the chunk's token ids). It never depends on
the chunk's position, the request, the process or ``PYTHONHASHSEED``: ingress, router, engine
and warm-up all call :func:`chunk_key` and agree on the result. No torch import here.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import NewType

ChunkKey = NewType("ChunkKey", str)

# Bump when the stored KV's meaning changes (RoPE convention, BOS handling, tensor layout):
# every old key then misses instead of linking stale bytes.
KV_LAYOUT_VERSION = 1

KEY_HEX_CHARS = 32


def chunk_key(model_fingerprint: str, token_ids: Sequence[int]) -> ChunkKey:
    """Content address of one chunk's KV.

    Args:
        model_fingerprint: the engine's model fingerprint (weights, config and KV dtype).
        token_ids: the chunk's own token ids (no BOS).

    Returns:
        A 32-character lowercase hex string, safe as a file or object name.
    """
    if not model_fingerprint:
        raise ValueError("model_fingerprint must be a non-empty string")
    if len(token_ids) == 0:
        raise ValueError("a chunk needs at least one token")
    h = hashlib.blake2b(digest_size=KEY_HEX_CHARS // 2, person=b"epic-chunk")
    h.update(struct.pack("<I", KV_LAYOUT_VERSION))
    fp = model_fingerprint.encode()
    h.update(struct.pack("<I", len(fp)))
    h.update(fp)
    h.update(struct.pack(f"<{len(token_ids)}q", *token_ids))
    return ChunkKey(h.hexdigest())


def is_chunk_key(text: str) -> bool:
    """Whether ``text`` has the shape of a chunk key (for parsing object names)."""
    return len(text) == KEY_HEX_CHARS and all(c in "0123456789abcdef" for c in text)


CHUNK_OBJECT_SUFFIX = ".kv"


def chunk_object_name(key: ChunkKey) -> str:
    """Object name of a stored chunk, relative to a persistent tier's root.

    The first two hex characters fan keys out over 256 folders (directory listings stay short;
    S3 spreads request load over prefixes). :func:`key_from_object_name` reverses it.
    """
    if not is_chunk_key(key):
        raise ValueError(f"not a chunk key: {key!r} (expected {KEY_HEX_CHARS} lowercase hex characters)")
    return f"chunks/{key[:2]}/{key}{CHUNK_OBJECT_SUFFIX}"


def key_from_object_name(name: str) -> ChunkKey | None:
    """The chunk key an object name stands for, or None if ``name`` is not a chunk object."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "chunks" or not parts[2].endswith(CHUNK_OBJECT_SUFFIX):
        return None
    text = parts[2][: -len(CHUNK_OBJECT_SUFFIX)]
    if not is_chunk_key(text) or parts[1] != text[:2]:
        return None
    return ChunkKey(text)
