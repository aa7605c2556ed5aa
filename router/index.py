"""Chunk-residency index: which replica holds which chunk keys, and in which tier.

Two sources write it, with different authority:

- **routing decisions** (:meth:`ChunkResidencyIndex.record_decision`): the moment a request
  is routed, its chunks will be on the chosen replica's device; learned at once so the next
  request sharing them follows, long before the replica's stats say so;
- **replica stats** (:meth:`ChunkResidencyIndex.apply_stats`): the replica's own account,
  authoritative but up to one stats period old. A complete stats record drops what the
  replica no longer holds, except keys learned from decisions within ``decision_grace_s``
  (the stats may predate them) -- unless the stats provably postdate the key's last decision:
  they list a key that a later (or the same) decision brought to the replica new. Then an
  unlisted key was evicted since, and goes at once.

Per replica the entries form an LRU that mirrors the replica's own caches: once a replica has
reported stats, its capacity is taken as the most keys it ever reported holding, and learned
keys push out the least recently used ones beyond it (as they do on the replica), so the index
does not go on believing in chunks the replica has long evicted. Until a replica is seen
evicting, keys learned since its last stats all stay (its capacity may be larger than it has
reported); ``max_keys_per_replica`` bounds everything. Learned keys keep the order they were
learned in. Keys are stored in their short form (:func:`router.stats.short_key`).

    replica "a": OrderedDict{ short_key -> _Entry(tier, learned_at, brought_at) }  oldest ... newest
                 capacity = most keys "a" ever reported (before it is seen evicting: at least
                            the keys learned since its last stats)
    holders:     { short_key -> number of replicas holding it }          (the cluster tier)
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from router.hint import RoutingHint
from router.stats import ReplicaStats, short_key

LocalTier = Literal["gpu", "host"]


class TierTokens(NamedTuple):
    """A request's tokens a replica already holds, by tier.

    ``cluster`` counts tokens the replica does not hold itself but another replica does (their
    KV is in the cluster store and fetched rather than computed).
    """

    gpu: int = 0
    host: int = 0
    cluster: int = 0

    @property
    def local(self) -> int:
        """Tokens held by the replica itself (device + host memory)."""
        return self.gpu + self.host


@dataclass(slots=True)
class _Capacity:
    reported_max: int = 0  # most keys the replica ever reported holding
    learned_since_stats: int = 0  # new keys learned from decisions since its last stats
    full: bool = False  # a complete stats record dropped keys: the replica evicts at its capacity
    complete: bool = False  # its last stats listed every key: a key we lack, it lacks

    def limit(self, max_keys: int) -> int:
        if self.full:
            return min(max_keys, self.reported_max)
        return min(max_keys, max(self.reported_max, self.learned_since_stats))


@dataclass(slots=True)
class _Entry:
    tier: LocalTier
    # When a routing decision taught us this entry; None once a replica's stats confirmed it.
    learned_at: float | None
    # When a decision brought this key to a replica that (as far as we knew) lacked it; None once
    # confirmed. Stats listing such a key were taken after that decision reached the replica.
    brought_at: float | None = None


class ChunkResidencyIndex:
    """Per replica, the chunk keys it holds by tier (bounded LRU per replica).

    Args:
        max_keys_per_replica: most keys remembered per replica (least recently used go first).
        decision_grace_s: how long a key learned from a decision survives stats that omit it.
        clock: monotonic time source in seconds (injected for deterministic tests).
    """

    def __init__(
        self,
        max_keys_per_replica: int = 8192,
        decision_grace_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_keys_per_replica < 1:
            raise ValueError(f"max_keys_per_replica must be >= 1, got {max_keys_per_replica}")
        if decision_grace_s < 0:
            raise ValueError(f"decision_grace_s must be >= 0, got {decision_grace_s}")
        self._max_keys = max_keys_per_replica
        self._grace_s = decision_grace_s
        self._clock = clock
        self._replicas: dict[str, OrderedDict[str, _Entry]] = {}
        self._capacity: dict[str, _Capacity] = {}
        # Replicas that left (ids are never reused): a late decision or stats report about one
        # must not bring it back.
        self._gone: set[str] = set()
        self._holders: dict[str, int] = {}

    def replica_ids(self) -> list[str]:
        """Replicas the index knows anything about."""
        return list(self._replicas)

    def num_keys(self, replica_id: str) -> int:
        """Keys remembered for one replica."""
        return len(self._replicas.get(replica_id, ()))

    def tier_of(self, replica_id: str, key: str) -> LocalTier | None:
        """The tier a replica holds ``key`` in, or None."""
        entry = self._replicas.get(replica_id, {}).get(short_key(key))
        return entry.tier if entry is not None else None

    def record_decision(self, replica_id: str, hint: RoutingHint) -> None:
        """Learn that ``replica_id`` will hold the hint's spans on device (it was routed there)."""
        if replica_id in self._gone:
            return
        now = self._clock()
        entries = self._entries(replica_id)
        capacity = self._capacity.get(replica_id)
        for key, _ in hint.spans():
            key = short_key(key)
            old = entries.get(key)
            if capacity is not None and old is None:
                capacity.learned_since_stats += 1
            known = capacity is not None and capacity.complete
            brought_at = (now if known else None) if old is None else old.brought_at
            self._put(entries, key, _Entry("gpu", now, brought_at))
        self._evict(replica_id, entries)

    def apply_stats(self, replica_id: str, stats: ReplicaStats) -> None:
        """Correct one replica's entries from its published stats (see the module docstring)."""
        if not stats.reported or replica_id in self._gone:
            return
        now = self._clock()
        entries = self._entries(replica_id)
        listed: set[str] = set()
        # Lists are most-recent-first; insert oldest first so the LRU order matches, and device
        # keys last so a key listed in both tiers ends up "gpu".
        for tier, keys in (("host", stats.host_keys), ("gpu", stats.gpu_keys)):
            for key in reversed(keys):
                listed.add(key)
                entry = entries.get(key)
                if entry is not None and self._is_recent(entry, now):
                    entries.move_to_end(key)
                    continue
                self._put(entries, key, _Entry(tier, None))
        # Keys learned from decisions these stats may predate are the newest knowledge, in the
        # order they were learned (the replica's LRU saw them in that order): an unlisted key
        # learned before a listed one is older there, so it is the first to go beyond capacity.
        recent = sorted((e.learned_at, k) for k, e in entries.items() if self._is_recent(e, now))
        for _, key in recent:
            entries.move_to_end(key)
        unlisted_recent = [k for _, k in recent if k not in listed]
        gone = []
        if stats.complete:
            # The latest decision these stats reflect: one whose new key they list. A key last
            # routed there no later than that and not listed was evicted since, grace or not.
            seen_at = max((entries[k].brought_at or -1.0 for k in listed if k in entries), default=-1.0)
            evicted = [k for k in unlisted_recent if entries[k].learned_at <= seen_at]
            unlisted_recent = [k for k in unlisted_recent if entries[k].learned_at > seen_at]
            gone = [k for k, e in entries.items() if k not in listed and not self._is_recent(e, now)] + evicted
            for key in gone:
                self._drop(entries, key)
        capacity = self._capacity.setdefault(replica_id, _Capacity())
        capacity.full = capacity.full or bool(gone)
        capacity.complete = stats.complete
        capacity.reported_max = max(capacity.reported_max, stats.gpu_count + stats.host_count)
        capacity.learned_since_stats = len(unlisted_recent)
        self._evict(replica_id, entries)

    def remove_replica(self, replica_id: str) -> None:
        """Forget a replica (it died or was scaled down), for good."""
        self._gone.add(replica_id)
        self._capacity.pop(replica_id, None)
        for key in self._replicas.pop(replica_id, {}):
            self._release_holder(key)

    def retain_replicas(self, replica_ids: Iterable[str]) -> None:
        """Forget every replica not in ``replica_ids``."""
        keep = set(replica_ids)
        for replica_id in [r for r in self._replicas if r not in keep]:
            self.remove_replica(replica_id)

    def held_tokens(self, replica_id: str, hint: RoutingHint) -> TierTokens:
        """The hint's tokens ``replica_id`` holds, by tier (read-only: LRU order unchanged)."""
        entries = self._replicas.get(replica_id, {})
        gpu = host = cluster = 0
        for key, num_tokens in hint.spans():
            key = short_key(key)
            entry = entries.get(key)
            if entry is None:
                if self._holders.get(key, 0) > 0:
                    cluster += num_tokens
            elif entry.tier == "gpu":
                gpu += num_tokens
            else:
                host += num_tokens
        return TierTokens(gpu, host, cluster)

    def _entries(self, replica_id: str) -> OrderedDict[str, _Entry]:
        return self._replicas.setdefault(replica_id, OrderedDict())

    def _is_recent(self, entry: _Entry, now: float) -> bool:
        return entry.learned_at is not None and now - entry.learned_at <= self._grace_s

    def _put(self, entries: OrderedDict[str, _Entry], key: str, entry: _Entry) -> None:
        if key not in entries:
            self._holders[key] = self._holders.get(key, 0) + 1
        entries[key] = entry
        entries.move_to_end(key)

    def _drop(self, entries: OrderedDict[str, _Entry], key: str) -> None:
        del entries[key]
        self._release_holder(key)

    def _evict(self, replica_id: str, entries: OrderedDict[str, _Entry]) -> None:
        capacity = self._capacity.get(replica_id)
        limit = self._max_keys if capacity is None else capacity.limit(self._max_keys)
        while len(entries) > limit:
            key, _ = entries.popitem(last=False)
            self._release_holder(key)

    def _release_holder(self, key: str) -> None:
        count = self._holders[key] - 1
        assert count >= 0, f"holder count of {key} went negative"
        if count:
            self._holders[key] = count
        else:
            del self._holders[key]
