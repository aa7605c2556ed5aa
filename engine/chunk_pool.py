"""On-device chunk residency: compiled chunk KV kept for the next request that links it.

A bytes budget with LRU eviction; chunks pinned by requests waiting to link them are never
evicted (the pool may then run over budget until they unpin).
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from kvstore.keys import ChunkKey


class ChunkPool:
    """key -> NoPE chunk KV ``[num_layers, 2, num_tokens, num_kv_heads, head_dim]`` on the device."""

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[ChunkKey, torch.Tensor] = OrderedDict()
        self._pins: dict[ChunkKey, int] = {}
        self.used_bytes = 0
        self.num_evictions = 0

    def __contains__(self, key: ChunkKey) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def num_pins(self) -> int:
        """Pins held, over all chunks (a chunk pinned twice counts twice; 0 once no request
        waits to link a resident chunk)."""
        return sum(self._pins.values())

    def keys(self) -> list[ChunkKey]:
        """Resident keys, most recently used last."""
        return list(self._entries)

    def get(self, key: ChunkKey) -> torch.Tensor | None:
        kv = self._entries.get(key)
        if kv is not None:
            self._entries.move_to_end(key)
        return kv

    def put(self, key: ChunkKey, kv: torch.Tensor, pins: int = 0) -> None:
        """Make a chunk resident, taking ``pins`` pins on it before anything is evicted."""
        if key in self._entries:
            self._entries.move_to_end(key)
        else:
            self._entries[key] = kv
            self.used_bytes += kv.numel() * kv.element_size()
        for _ in range(pins):
            self.pin(key)
        self._evict()

    def pin(self, key: ChunkKey) -> None:
        assert key in self._entries, f"pinning a chunk that is not resident: {key}"
        self._pins[key] = self._pins.get(key, 0) + 1

    def unpin(self, key: ChunkKey) -> None:
        count = self._pins[key] - 1
        if count:
            self._pins[key] = count
        else:
            del self._pins[key]
            self._evict()

    def _evict(self) -> None:
        if self.used_bytes <= self.budget_bytes:
            return
        for key in [k for k in self._entries if k not in self._pins]:
            if self.used_bytes <= self.budget_bytes:
                break
            kv = self._entries.pop(key)
            self.used_bytes -= kv.numel() * kv.element_size()
            self.num_evictions += 1
