"""The routing-stats record a replica publishes and the router parses.

A replica returns :func:`make_routing_stats` from its ``record_routing_stats()``; Serve pulls it
every ``request_routing_stats_period_s`` and hands it to every router as the replica's
``routing_stats`` (lagging up to one period, rebroadcast only when it changes). It is a plain
dict of builtins, kept compact because it travels to every router:

    {"v": 1, "queue_len": 3, "running_tokens": 5120, "free_blocks": 812, "total_blocks": 1024,
     "gpu": ["3fa2c1...", ...], "gpu_count": 412,      # 16-hex key prefixes, most recent first
     "host": ["9b0e47...", ...], "host_count": 3001}   # at most max_keys_per_tier listed

``*_count`` is how many keys the tier really holds, so the router can tell a complete list
(absent key = evicted) from a capped one (absent key = unknown).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

STATS_VERSION = 1

# 64 bits of a chunk key: collisions among a replica's few thousand keys are negligible.
KEY_PREFIX_CHARS = 16

DEFAULT_MAX_KEYS_PER_TIER = 1024

_COUNTERS = ("queue_len", "running_tokens", "free_blocks", "total_blocks")
TIERS = ("gpu", "host")


def short_key(key: str) -> str:
    """The compact form of a chunk (or prefix) key used in stats and in the residency index."""
    return key[:KEY_PREFIX_CHARS]


def _unique_short_keys(keys: Iterable[str], limit: int) -> tuple[list[str], int]:
    """Short keys in first-seen order (at most ``limit``) and the number of distinct keys."""
    seen: dict[str, None] = dict.fromkeys(short_key(k) for k in keys)
    return list(islice(seen, limit)), len(seen)


def make_routing_stats(
    *,
    queue_len: int,
    running_tokens: int,
    free_blocks: int,
    total_blocks: int,
    gpu_keys: Iterable[str],
    host_keys: Iterable[str],
    max_keys_per_tier: int = DEFAULT_MAX_KEYS_PER_TIER,
) -> dict[str, Any]:
    """Build the dict a replica returns from ``record_routing_stats()``.

    Args:
        queue_len: requests waiting or running on the replica.
        running_tokens: prompt + generated tokens of the running requests.
        free_blocks: free pages of the paged KV pool.
        total_blocks: all pages of the paged KV pool.
        gpu_keys: chunk keys (and prefix keys) resident in the engine's on-device pool,
            most recently used first.
        host_keys: chunk keys in the replica's memory tier, most recently used first.
        max_keys_per_tier: most keys listed per tier; the rest are only counted.

    Returns:
        A plain dict of builtins (see the module docstring).
    """
    for name, value in zip(_COUNTERS, (queue_len, running_tokens, free_blocks, total_blocks)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if free_blocks > total_blocks:
        raise ValueError(f"free_blocks {free_blocks} exceeds total_blocks {total_blocks}")
    if max_keys_per_tier < 0:
        raise ValueError(f"max_keys_per_tier must be >= 0, got {max_keys_per_tier}")
    gpu, gpu_count = _unique_short_keys(gpu_keys, max_keys_per_tier)
    host, host_count = _unique_short_keys(host_keys, max_keys_per_tier)
    return {
        "v": STATS_VERSION,
        "queue_len": int(queue_len),
        "running_tokens": int(running_tokens),
        "free_blocks": int(free_blocks),
        "total_blocks": int(total_blocks),
        "gpu": gpu,
        "gpu_count": gpu_count,
        "host": host,
        "host_count": host_count,
    }


@dataclass(frozen=True, slots=True)
class ReplicaStats:
    """A parsed routing-stats record.

    Attributes:
        reported: False when the replica has published nothing yet (all other fields are zero).
        queue_len: requests waiting or running on the replica.
        running_tokens: tokens of the running requests.
        free_blocks: free KV pages.
        total_blocks: all KV pages.
        gpu_keys: short keys on device, most recent first (possibly capped).
        host_keys: short keys in host memory, most recent first (possibly capped).
        gpu_count: keys the device tier really holds.
        host_count: keys the host tier really holds.
    """

    reported: bool = False
    queue_len: int = 0
    running_tokens: int = 0
    free_blocks: int = 0
    total_blocks: int = 0
    gpu_keys: tuple[str, ...] = ()
    host_keys: tuple[str, ...] = ()
    gpu_count: int = 0
    host_count: int = 0

    @property
    def complete(self) -> bool:
        """Whether every held key is listed (so an unlisted key is not held)."""
        return len(self.gpu_keys) == self.gpu_count and len(self.host_keys) == self.host_count

    @property
    def kv_free_fraction(self) -> float | None:
        """Free share of the KV pool, or None when the pool size is unknown."""
        return self.free_blocks / self.total_blocks if self.total_blocks else None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ReplicaStats:
        """Parse a replica's ``routing_stats``.

        Missing or empty stats (nothing published yet) give an unreported record. Keys other
        than ours are ignored: a replica may publish more for other consumers.

        Raises:
            ValueError: the record has another version, lacks a field or has a bad value.
        """
        if not d:
            return cls()
        if d.get("v") != STATS_VERSION:
            raise ValueError(f"routing stats version {d.get('v')!r} is not {STATS_VERSION}")
        counters = {}
        for name in (*_COUNTERS, "gpu_count", "host_count"):
            value = d.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"routing stats field {name!r} must be an int >= 0, got {value!r}")
            counters[name] = value
        lists = {}
        for tier in TIERS:
            keys = d.get(tier)
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise ValueError(f"routing stats field {tier!r} must be a list of str")
            if len(keys) > counters[f"{tier}_count"]:
                raise ValueError(f"routing stats list {tier!r} is longer than {tier}_count")
            lists[f"{tier}_keys"] = tuple(keys)
        return cls(reported=True, **counters, **lists)
