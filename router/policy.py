"""Routing policies: pure functions of (hint, replica loads, rng) -> decision.

:class:`CacheAwarePolicy` decides in three steps:

1. nothing held: no replica holds at least ``min_affinity_tokens`` more of the request
   locally than the replica holding least (or there is no hint) -> the fallback picks by
   load, reason ``"random"``;
2. affinity: among open replicas (below their queue bound) whose queue is within
   ``imbalance_threshold`` of the least-loaded open replica, the best score wins if it holds
   ``min_affinity_tokens`` more than that least-holding replica, reason ``"affinity"``;
3. otherwise (the holders are saturated or too far ahead in load) -> the fallback, reason
   ``"load"``.

The fallback is power-of-two choices (two random open replicas, the less loaded wins) or
least-loaded. :class:`PowerOfTwoPolicy` is the cache-blind baseline. Neither touches time,
global randomness or the residency index: everything arrives as arguments.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from router.config import RouterConfig
from router.hint import RoutingHint
from router.index import TierTokens

__all__ = [
    "CacheAwarePolicy",
    "PowerOfTwoPolicy",
    "ReplicaLoad",
    "RouterConfig",
    "RoutingDecision",
]

Reason = Literal["affinity", "load", "random"]
REASONS: tuple[str, ...] = ("affinity", "load", "random")


@dataclass(frozen=True, slots=True)
class ReplicaLoad:
    """One candidate replica as the policy sees it.

    Attributes:
        replica_id: the replica's id.
        queue_len: requests queued or running there.
        running_tokens: tokens it is running (from its stats; 0 when unknown).
        max_queue_len: queue bound (Serve's ``max_ongoing_requests``); None for unbounded.
        held: the request's tokens it already holds, by tier (from the residency index).
    """

    replica_id: str
    queue_len: int
    running_tokens: int = 0
    max_queue_len: int | None = None
    held: TierTokens = TierTokens()

    @property
    def saturated(self) -> bool:
        """Whether the replica is at its queue bound (it would reject the request)."""
        return self.max_queue_len is not None and self.queue_len >= self.max_queue_len


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """The chosen replica, why, and the affinity scores considered (empty for load picks)."""

    replica_id: str
    reason: Reason
    scores: Mapping[str, float] = field(default_factory=dict)


def _load_key(r: ReplicaLoad) -> tuple[int, int]:
    return r.queue_len, r.running_tokens


def _open(replicas: Sequence[ReplicaLoad]) -> list[ReplicaLoad]:
    if not replicas:
        raise ValueError("no replicas to choose from")
    # All saturated: still answer (Serve probes, backs off and retries the ranked groups).
    return [r for r in replicas if not r.saturated] or list(replicas)


def power_of_two(replicas: Sequence[ReplicaLoad], rng: random.Random) -> ReplicaLoad:
    """Sample two distinct replicas; the less loaded wins (the first sampled on a tie)."""
    if len(replicas) == 1:
        return replicas[0]
    a, b = rng.sample(range(len(replicas)), 2)
    return replicas[b] if _load_key(replicas[b]) < _load_key(replicas[a]) else replicas[a]


def least_loaded(replicas: Sequence[ReplicaLoad]) -> ReplicaLoad:
    """The replica with the shortest queue (fewest running tokens, then input order, on ties)."""
    return min(replicas, key=_load_key)


class PowerOfTwoPolicy:
    """Cache-blind baseline: power-of-two choices on queue length (Serve's default router)."""

    def choose(
        self, hint: RoutingHint | None, replicas: Sequence[ReplicaLoad], rng: random.Random
    ) -> RoutingDecision:
        """Pick a replica; ``hint`` is ignored."""
        return RoutingDecision(power_of_two(_open(replicas), rng).replica_id, "random")


class CacheAwarePolicy:
    """Score = held tokens weighted by tier minus a load penalty, with a load fallback.

    Args:
        config: weights, penalties, threshold and fallback (see :class:`RouterConfig`).
    """

    def __init__(self, config: RouterConfig | None = None) -> None:
        self.config = config or RouterConfig()

    def score(self, replica: ReplicaLoad) -> float:
        """Affinity score of one replica, in token-equivalents."""
        c = self.config
        held = replica.held
        return (
            c.gpu_weight * held.gpu
            + c.host_weight * held.host
            + c.cluster_weight * held.cluster
            - c.queue_penalty_tokens * replica.queue_len
            - c.running_token_penalty * replica.running_tokens
        )

    def choose(
        self, hint: RoutingHint | None, replicas: Sequence[ReplicaLoad], rng: random.Random
    ) -> RoutingDecision:
        """Pick a replica for a request (deterministic given the arguments and rng state).

        Args:
            hint: the request's reusable spans; None routes by load alone.
            replicas: the candidates, with their load and held tokens.
            rng: the only source of randomness (used by the power-of-two fallback).

        Raises:
            ValueError: ``replicas`` is empty.
        """
        open_replicas = _open(replicas)
        min_tokens = max(self.config.min_affinity_tokens, 1)
        # Tokens every candidate holds (a shared system prompt) cannot tell replicas apart.
        floor = min(r.held.local for r in replicas)
        if hint is None or max(r.held.local for r in replicas) - floor < min_tokens:
            return RoutingDecision(self._fallback(open_replicas, rng).replica_id, "random")
        min_queue = min(r.queue_len for r in open_replicas)
        eligible = [
            r for r in open_replicas if r.queue_len - min_queue <= self.config.imbalance_threshold
        ]
        scores = {r.replica_id: self.score(r) for r in eligible}
        best = max(eligible, key=lambda r: (scores[r.replica_id], -r.queue_len, -r.running_tokens))
        if best.held.local - floor >= min_tokens:
            return RoutingDecision(best.replica_id, "affinity", scores)
        return RoutingDecision(self._fallback(open_replicas, rng).replica_id, "load", scores)

    def _fallback(self, replicas: Sequence[ReplicaLoad], rng: random.Random) -> ReplicaLoad:
        if self.config.fallback == "power_of_two":
            return power_of_two(replicas, rng)
        return least_loaded(replicas)
