"""The one small interface every tier implements, and what a put reports back.

A tier stores chunk KV tensors ``[num_layers, 2, num_tokens, num_kv_heads, head_dim]`` by chunk
key. ``get`` returns None for an absent key and raises :class:`~kvstore.errors.TierError` when its
backend fails or what it holds fails a check; it never returns wrong bytes. The batched forms
default to loops; tiers with a cheaper batched path override them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import torch

from kvstore.keys import ChunkKey


class ChunkHit(NamedTuple):
    """A chunk found in the store and the name of the tier that served it ("memory",
    "object_store", "s3", "dir"). The engine's ChunkSource protocol returns this record."""

    kv: torch.Tensor  # [num_layers, 2, num_tokens, num_kv_heads, head_dim]
    tier: str


class Evicted(NamedTuple):
    """A chunk a bounded tier dropped to make room."""

    key: ChunkKey
    nbytes: int
    kv: torch.Tensor | None  # the data, when the tier wants it spilled to a slower tier


class PutResult(NamedTuple):
    stored: bool  # False when the chunk is larger than the tier's whole budget
    evicted: list[Evicted]


class Tier(ABC):
    """get / put / contains / delete by chunk key."""

    name: str

    @abstractmethod
    def get(self, key: ChunkKey) -> torch.Tensor | None:
        """The chunk's KV, or None if absent. The tensor must not be written in place."""

    @abstractmethod
    def put(self, key: ChunkKey, kv: torch.Tensor) -> PutResult:
        """Store ``kv`` (contiguous, on the CPU). Putting a present key keeps the old copy:
        keys are content addresses, so both copies hold the same bytes."""

    @abstractmethod
    def contains(self, key: ChunkKey) -> bool:
        """Whether the tier holds ``key``, without moving its data."""

    @abstractmethod
    def delete(self, key: ChunkKey) -> None:
        """Drop ``key`` if present."""

    def close(self) -> None:
        """Release the tier's local resources (never the shared data)."""
