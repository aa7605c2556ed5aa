"""Named byte objects: what the persistent tiers and the document registry are built on.

Names are relative, ``/``-separated (``chunks/ab/ab12....kv``, ``docs/<scope>/<id>.json``).
Implementations raise :class:`~kvstore.errors.TierError` when their backend fails and return
None / False for an absent name.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

Buffer = bytes | bytearray | memoryview | np.ndarray


def check_name(name: str) -> str:
    """Reject names that could escape a root or alias another name."""
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise ValueError(f"invalid object name {name!r}")
    return name


class BlobStore(Protocol):
    """A flat namespace of immutable byte objects."""

    def put(self, name: str, parts: Sequence[Buffer]) -> None:
        """Store the concatenation of ``parts`` under ``name``, replacing it atomically."""

    def get(self, name: str) -> np.ndarray | None:
        """The whole object as a writable ``[nbytes]`` uint8 array, or None if absent."""

    def exists(self, name: str) -> bool: ...

    def delete(self, name: str) -> None:
        """Remove ``name`` if present."""

    def delete_many(self, names: Sequence[str]) -> None: ...

    def list(self, prefix: str) -> list[str]:
        """Every name that starts with ``prefix``."""


class MemoryBlobs:
    """A BlobStore in this process's memory: the registry's home when nothing persists."""

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, name: str, parts: Sequence[Buffer]) -> None:
        data = b"".join(memoryview(p).cast("B") for p in parts)
        with self._lock:
            self._objects[check_name(name)] = data

    def get(self, name: str) -> np.ndarray | None:
        with self._lock:
            data = self._objects.get(name)
        return None if data is None else np.frombuffer(data, dtype=np.uint8).copy()

    def exists(self, name: str) -> bool:
        with self._lock:
            return name in self._objects

    def delete(self, name: str) -> None:
        with self._lock:
            self._objects.pop(name, None)

    def delete_many(self, names: Sequence[str]) -> None:
        for name in names:
            self.delete(name)

    def list(self, prefix: str) -> list[str]:
        with self._lock:
            return sorted(n for n in self._objects if n.startswith(prefix))
