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
