"""The model fingerprint: which weights, config and dtype produced a KV cache.

It goes into every chunk key (:func:`kvstore.keys.chunk_key`), so KV computed by different
weights or in a different dtype never mixes. Stable across processes, machines and reloads.
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
from pathlib import Path

BLOCK_BYTES = 8 * 1024 * 1024
# Above this size a weight file is sampled instead of read whole: its safetensors header (every
# tensor's name, dtype, shape and offsets), its size, and its first and last SAMPLE_BYTES. A
# change confined to the middle of a huge file would go unnoticed; re-publishing weights under
# the same names and shapes without touching either end is not a case worth reading 100 GB for.
FULL_HASH_MAX_BYTES = 2 * 1024**3
SAMPLE_BYTES = 64 * 1024 * 1024
# config.json keys that say who wrote the file, not what the model is.
_VOLATILE_CONFIG_KEYS = ("transformers_version", "_name_or_path")


def fingerprint_of(model_dir: Path, dtype_name: str) -> str:
    """The fingerprint of the model in ``model_dir`` (a Hugging Face directory) run in
    ``dtype_name``: what the loader attaches to the loaded model and what the ingress and the
    warm-up put into chunk keys without loading the weights.

    Raises:
        ValueError: the directory has no weights (see :func:`engine.loader.weight_files`).
    """
    from engine.loader import weight_files

    return model_fingerprint(model_dir / "config.json", weight_files(model_dir), dtype_name)


def model_fingerprint(config_path: Path, weight_files: list[Path], dtype_name: str) -> str:
    """Hex digest of (canonical config.json, dtype, the weight files).

    Args:
        config_path: the model's config.json.
        weight_files: its safetensors files (order does not matter).
        dtype_name: the engine's weight/KV dtype, e.g. ``"float32"``.

    Returns:
        32 lowercase hex characters.
    """
    h = hashlib.blake2b(digest_size=16, person=b"epic-model")
    config = json.loads(config_path.read_text())
    for key in _VOLATILE_CONFIG_KEYS:
        config.pop(key, None)
    _update_framed(h, json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    _update_framed(h, dtype_name.encode())
    for path in sorted(weight_files, key=lambda p: p.name):
        _update_framed(h, path.name.encode())
        _update_framed(h, file_digest(path))
    return h.hexdigest()


def file_digest(path: Path) -> bytes:
    """Digest of one weight file: all bytes, or header + size + both ends when large.

    Memoized per process by the file's identity (path, size, mtime, inode): the engine reads a
    file's digest to verify a cache directory and again for the fingerprint, but hashes it once.
    """
    st = path.stat()
    return _digest(str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=256)
def _digest(path_name: str, size: int, mtime_ns: int, inode: int) -> bytes:
    path = Path(path_name)
    h = hashlib.blake2b(digest_size=32)
    h.update(struct.pack("<Q", size))
    with path.open("rb") as f:
        if size <= FULL_HASH_MAX_BYTES:
            while block := f.read(BLOCK_BYTES):
                h.update(block)
            return h.digest()
        (header_len,) = struct.unpack("<Q", f.read(8))
        h.update(f.read(header_len))
        f.seek(0)
        _update_from(h, f, SAMPLE_BYTES)
        f.seek(size - SAMPLE_BYTES)
        _update_from(h, f, SAMPLE_BYTES)
    return h.digest()


def _update_from(h, f, num_bytes: int) -> None:
    while num_bytes > 0 and (block := f.read(min(BLOCK_BYTES, num_bytes))):
        h.update(block)
        num_bytes -= len(block)


def _update_framed(h, data: bytes) -> None:
    """Length-prefix each field so concatenations cannot collide."""
    h.update(struct.pack("<Q", len(data)))
    h.update(data)
