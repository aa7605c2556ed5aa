"""Tier 1: chunk KV in this process's host memory, LRU under a byte budget."""

from __future__ import annotations

import threading

import torch

from kvstore.keys import ChunkKey
from kvstore.lru import LruBudgeted, LruBytes
from kvstore.tier import Evicted, PutResult, Tier


class MemoryTier(LruBudgeted, Tier):
    """Tensors by key in a dict; evictions are not spilled (slower tiers already hold them)."""

    name = "memory"

    def __init__(self, budget_bytes: int) -> None:
        self._lru = LruBytes(budget_bytes)
        self._data: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()

    def get(self, key: ChunkKey) -> torch.Tensor | None:
        with self._lock:
            kv = self._data.get(key)
            if kv is not None:
                self._lru.touch(key)
            return kv

    def put(self, key: ChunkKey, kv: torch.Tensor) -> PutResult:
        with self._lock:
            victims = self._lru.admit(key, kv.nbytes)
            if victims is None:
                return PutResult(False, [])
            for victim in victims:
                del self._data[victim.key]
            self._data.setdefault(key, kv)
        return PutResult(True, [Evicted(ChunkKey(v.key), v.nbytes, None) for v in victims])

    def contains(self, key: ChunkKey) -> bool:
        with self._lock:
            return key in self._data

    def delete(self, key: ChunkKey) -> None:
        with self._lock:
            if self._lru.remove(key) is not None:
                del self._data[key]

    def keys(self) -> list[ChunkKey]:
        """Resident keys, least recently used first."""
        with self._lock:
            return [ChunkKey(k) for k in self._lru.keys()]
