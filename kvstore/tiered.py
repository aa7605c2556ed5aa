"""The tiered chunk store: the engine's ChunkSource over memory -> object store -> persistent.

    get_chunk(key)                                  put_chunk(key, kv)
      memory ── hit ──────────────> return            memory      (at once)
        │ miss (single-flight per key from here)      object store (at once; evictions spill ─┐)
      object store ── hit ──> copy, promote up        write-behind queue ──> persistent <─────┘
        │ miss
      persistent ── hit ──> promote to both above

A failing tier (S3 down, full disk, corrupt object, Ray trouble) reads as a miss or a dropped
write; the failure is counted and logged, never raised. Tensors handed out may be shared with the
memory tier: callers must not write them in place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch

from kvstore.circuit import CircuitBreaker
from kvstore.errors import CorruptChunkError, TierError
from kvstore.keys import ChunkKey
from kvstore.memory import MemoryTier
from kvstore.single_flight import SingleFlight
from kvstore.stats import TierStats
from kvstore.tensors import host_kv
from kvstore.tier import ChunkHit, PutResult, Tier
from kvstore.write_behind import WriteBehind

T = TypeVar("T")

logger = logging.getLogger(__name__)


class TieredStore:
    """Read-through, write-behind composition of up to three tiers (any may be absent).

    Args:
        memory: this process's memory tier.
        cluster: the cluster-wide tier (Ray object store); its gets are zero-copy views of
            shared memory, so hits are copied into process memory before they are handed out.
        persistent: S3 or a local directory, written in the background.
        write_queue_size: bound of the persistent writer's queue.
        breakers: a circuit breaker per tier name (cluster and persistent): while one is open
            that tier's calls are skipped (counted as ``skipped``) instead of each paying the
            backend's timeouts and retries.
    """

    def __init__(
        self,
        memory: MemoryTier | None,
        cluster: Tier | None,
        persistent: Tier | None,
        write_queue_size: int,
        breakers: Mapping[str, CircuitBreaker] | None = None,
    ) -> None:
        self.memory = memory
        self.cluster = cluster
        self.persistent = persistent
        self.tiers: list[Tier] = [t for t in (memory, cluster, persistent) if t is not None]
        self._stats = {t.name: TierStats() for t in self.tiers}
        self._breakers = dict(breakers or {})
        self._stats_lock = threading.Lock()
        self._flight: SingleFlight[ChunkHit | None] = SingleFlight()
        self._writer = WriteBehind(self._persist, write_queue_size) if persistent is not None else None

    # ChunkSource

    def get_chunk(self, key: ChunkKey) -> ChunkHit | None:
        """The chunk's KV ``[num_layers, 2, num_tokens, num_kv_heads, head_dim]`` from the fastest
        tier holding it (promoted into the faster ones), or None."""
        if self.memory is not None:
            kv = self._get(self.memory, key)
            if kv is not None:
                return ChunkHit(kv, self.memory.name)
        return self._flight.do(key, lambda: self._fetch(key))

    def put_chunk(self, key: ChunkKey, kv: torch.Tensor) -> None:
        """Store a chunk: memory and object store at once, the persistent tier in the background.

        Raises:
            ValueError: if ``kv`` is not a 5-d KV tensor of a supported dtype (a caller bug).
        """
        kv = host_kv(kv)
        for tier in (self.memory, self.cluster):
            if tier is not None:
                self._put(tier, key, kv)
        if self._writer is not None:
            self._writer.submit(key, kv)

    # The rest of the store's surface

    def contains(self, key: ChunkKey) -> str | None:
        """Name of the fastest tier holding ``key`` (no data moves), or None."""
        for tier in self.tiers:
            timed = self._timed(tier, "contains", lambda: tier.contains(key))
            if timed is not None and timed[0]:
                return tier.name
        return None

    def delete(self, key: ChunkKey) -> None:
        """Drop ``key`` from every tier (a pending background write of it is cancelled)."""
        if self._writer is not None:
            self._writer.cancel(key)
        for tier in self.tiers:
            self._timed(tier, "delete", lambda: tier.delete(key))

    def resident_keys(self, tier: str) -> list[ChunkKey]:
        """Keys held by a tier that can list cheaply ("memory", "object_store"), LRU first.

        Raises:
            ValueError: for any other tier name.
        """
        listable = {t.name: t for t in (self.memory, self.cluster) if t is not None}
        if tier not in listable:
            raise ValueError(f"tier {tier!r} cannot list its keys here; valid: {', '.join(listable) or 'none'}")
        timed = self._timed(listable[tier], "keys", listable[tier].keys)
        return [] if timed is None else timed[0]

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait for the background persistent writes; False on timeout."""
        return self._writer.flush(timeout_s) if self._writer is not None else True

    def close(self, timeout_s: float | None = None) -> None:
        """Finish background writes (waiting at most ``timeout_s``) and release local
        resources; shared data stays."""
        if self._writer is not None:
            self._writer.close(timeout_s)
        for tier in self.tiers:
            tier.close()

    def stats(self) -> dict[str, Any]:
        """Plain counters: ``{"tiers": {name: {...}}, "writes": {...}, "single_flight_joins": n}``."""
        with self._stats_lock:
            tiers = {name: s.as_dict() for name, s in self._stats.items()}
        for name, breaker in self._breakers.items():
            tiers[name]["circuit"] = breaker.state
        if self.memory is not None:
            tiers[self.memory.name].update(used_bytes=self.memory.used_bytes, budget_bytes=self.memory.budget_bytes)
        writer = self._writer
        writes = {"pending": writer.pending, "dropped": writer.dropped, "failed": writer.failed} if writer else {}
        return {"tiers": tiers, "writes": writes, "single_flight_joins": self._flight.joins}

    # Internals

    def _fetch(self, key: ChunkKey) -> ChunkHit | None:
        faster: list[Tier] = [self.memory] if self.memory is not None else []
        for tier in (self.cluster, self.persistent):
            if tier is None:
                continue
            kv = self._get(tier, key)
            if kv is None:
                faster.append(tier)
                continue
            if tier is self.cluster:
                kv = kv.clone()  # own the bytes; a view would pin the shared object
            for up in faster:
                self._put(up, key, kv)
            return ChunkHit(kv, tier.name)
        return None

    def _get(self, tier: Tier, key: ChunkKey) -> torch.Tensor | None:
        timed = self._timed(tier, "get", lambda: tier.get(key))
        if timed is None:
            return None
        kv, elapsed = timed
        with self._stats_lock:
            s = self._stats[tier.name]
            s.get_count += 1
            s.get_seconds += elapsed
            if kv is None:
                s.misses += 1
            else:
                s.hits += 1
                s.bytes_out += kv.nbytes
            self._recovered(tier, s)
        return kv

    def _timed(self, tier: Tier, op: str, call: Callable[[], T]) -> tuple[T, float] | None:
        """``call()``'s result and its seconds; None when the tier failed (recorded as such) or
        its breaker is open (the call is skipped)."""
        breaker = self._breakers.get(tier.name)
        if breaker is not None and not breaker.allow():
            with self._stats_lock:
                self._stats[tier.name].skipped += 1
            return None
        start = time.perf_counter()
        try:
            out = call()
        except TierError as err:
            if breaker is not None:  # a corrupt object came from a backend that answered
                breaker.success() if isinstance(err, CorruptChunkError) else breaker.failure()
            self._failed(tier, op, err)
            return None
        if breaker is not None:
            breaker.success()
        return out, time.perf_counter() - start

    def _put(self, tier: Tier, key: ChunkKey, kv: torch.Tensor) -> PutResult | None:
        timed = self._timed(tier, "put", lambda: tier.put(key, kv))
        if timed is None:
            return None
        result, elapsed = timed
        with self._stats_lock:
            s = self._stats[tier.name]
            s.put_count += 1
            s.put_seconds += elapsed
            s.bytes_in += kv.nbytes if result.stored else 0
            s.evictions += len(result.evicted)
            self._recovered(tier, s)
        if self._writer is not None and tier is not self.persistent:
            for evicted in result.evicted:
                if evicted.kv is not None:
                    self._writer.submit(evicted.key, evicted.kv, only_if_absent=True)
        return result

    def _persist(self, key: ChunkKey, kv: torch.Tensor, only_if_absent: bool) -> None:
        assert self.persistent is not None
        if only_if_absent:
            timed = self._timed(self.persistent, "contains", lambda: self.persistent.contains(key))
            if timed is None or timed[0]:
                return
        self._put(self.persistent, key, kv)

    def _failed(self, tier: Tier, op: str, err: TierError) -> None:
        with self._stats_lock:
            s = self._stats[tier.name]
            s.errors += 1
            first = not s.failing
            s.failing = True
        # One warning per failing spell; the error counter carries the rate.
        logger.log(logging.WARNING if first else logging.DEBUG, "tier %s %s failed: %s", tier.name, op, err)

    @staticmethod
    def _recovered(tier: Tier, s: TierStats) -> None:
        if s.failing:
            s.failing = False
            logger.info("tier %s recovered", tier.name)
