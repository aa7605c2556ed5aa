"""An event-driven replica model for evaluating routing policies on a request trace.

One FIFO server per replica with an LRU chunk cache of ``cache_tokens``. A request's service
time is ``base_s + compute_s_per_token * missed tokens + hit_s_per_token * hit chunk tokens``;
its chunk hits are counted when it is routed (the cache is updated in routing order). Arrivals
are Poisson. Every ``stats_period_s`` each replica publishes :func:`router.stats.make_routing_stats`
and the router's index applies it, as in Serve.

What a policy is told a replica holds (``ReplicaLoad.held``) depends on ``residency``:

- ``"index"``: the router's :class:`~router.index.ChunkResidencyIndex`, learned from decisions
  and corrected by the lagging stats (what the real router knows);
- ``"exact"``: every replica's cache as it is at that instant (what an oracle knows);
- ``"none"``: nothing (cache-blind policies, and policies that keep their own state).
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from router.config import RouterConfig
from router.hint import RoutingHint
from router.index import ChunkResidencyIndex, TierTokens
from router.policy import ReplicaLoad, RoutingDecision
from router.stats import ReplicaStats, make_routing_stats
from sim.workload import SimRequest

Residency = Literal["index", "exact", "none"]


class LRUChunkCache:
    """A replica's chunk cache: LRU over chunk keys with a token budget.

    Args:
        capacity_tokens: most chunk tokens held at once.
    """

    def __init__(self, capacity_tokens: int) -> None:
        if capacity_tokens < 1:
            raise ValueError(f"capacity_tokens must be >= 1, got {capacity_tokens}")
        self.capacity_tokens = capacity_tokens
        self._tokens: OrderedDict[str, int] = OrderedDict()
        self._used = 0

    def access(self, spans: Iterable[tuple[str, int]]) -> int:
        """Use the chunks of one request: returns the tokens that hit, then caches the rest."""
        hit = 0
        for key, num_tokens in spans:
            if key in self._tokens:
                hit += num_tokens
                self._tokens.move_to_end(key)
            elif num_tokens <= self.capacity_tokens:
                self._tokens[key] = num_tokens
                self._used += num_tokens
                while self._used > self.capacity_tokens:
                    _, evicted = self._tokens.popitem(last=False)
                    self._used -= evicted
        return hit

    def held_tokens(self, spans: Iterable[tuple[str, int]]) -> int:
        """Tokens of ``spans`` held now (read-only: LRU order unchanged)."""
        return sum(n for key, n in spans if key in self._tokens)

    def keys_mru(self) -> list[str]:
        """Held keys, most recently used first."""
        return list(reversed(self._tokens))

    @property
    def used_tokens(self) -> int:
        return self._used


@dataclass(frozen=True)
class SimConfig:
    """The simulated cluster.

    Attributes:
        num_replicas: engine replicas.
        cache_tokens: chunk-cache budget per replica, in tokens.
        utilization: offered load relative to capacity when nothing hits (sets the arrival rate).
        base_s: fixed cost per request.
        compute_s_per_token: prefill cost of a token that is not cached.
        hit_s_per_token: cost of linking a cached chunk token.
        stats_period_s: how often replicas publish routing stats.
        max_queue_len: per-replica queue bound (Serve's max_ongoing_requests).
        warmup_requests: first requests of the trace left out of the measurements (cold caches).
    """

    num_replicas: int = 2
    cache_tokens: int = 12_000
    utilization: float = 0.7
    base_s: float = 0.01
    compute_s_per_token: float = 2e-5
    hit_s_per_token: float = 1e-6
    stats_period_s: float = 1.0
    max_queue_len: int = 32
    warmup_requests: int = 0


class Policy(Protocol):
    def choose(
        self, hint: RoutingHint | None, replicas: Sequence[ReplicaLoad], rng: random.Random
    ) -> RoutingDecision: ...


@dataclass
class SimResult:
    """What one simulated run measured (requests after the warm-up only)."""

    chunk_tokens: int = 0
    hit_tokens: int = 0
    requests_per_replica: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    # Requests already queued or running on the chosen replica when each request joined it.
    queue_lens: list[int] = field(default_factory=list)

    @property
    def hit_rate(self) -> float:
        """Chunk tokens served from a replica's cache / all chunk tokens."""
        return self.hit_tokens / self.chunk_tokens if self.chunk_tokens else 0.0

    @property
    def mean_latency_s(self) -> float:
        return statistics.fmean(self.latencies_s)

    @property
    def p95_latency_s(self) -> float:
        return statistics.quantiles(self.latencies_s, n=20)[-1]

    @property
    def p99_queue_len(self) -> int:
        """99th percentile (nearest rank) of the queue a request found at its replica."""
        ordered = sorted(self.queue_lens)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]

    @property
    def max_replica_share(self) -> float:
        """The busiest replica's share of requests (0.5 is perfectly even for two)."""
        return max(self.requests_per_replica.values()) / sum(self.requests_per_replica.values())


class _Replica:
    def __init__(self, replica_id: str, cache_tokens: int) -> None:
        self.replica_id = replica_id
        self.cache = LRUChunkCache(cache_tokens)
        self.free_at = 0.0
        # (finish time, total tokens) of requests not finished yet.
        self.in_flight: list[tuple[float, int]] = []
        self.running_tokens = 0

    def advance(self, now: float) -> None:
        while self.in_flight and self.in_flight[0][0] <= now:
            self.running_tokens -= heapq.heappop(self.in_flight)[1]

    def stats(self) -> ReplicaStats:
        keys = self.cache.keys_mru()
        d = make_routing_stats(
            queue_len=len(self.in_flight),
            running_tokens=self.running_tokens,
            free_blocks=0,
            total_blocks=0,
            gpu_keys=keys,
            host_keys=(),
            max_keys_per_tier=len(keys),
        )
        return ReplicaStats.from_dict(d)


class SimClock:
    """Simulated time, injected into the residency index."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate(
    policy: Policy,
    requests: Sequence[SimRequest],
    sim: SimConfig,
    rng: random.Random,
    index_config: RouterConfig | None = None,
    residency: Residency = "index",
) -> SimResult:
    """Route a trace through simulated replicas and measure chunk hits, queues and latency.

    Args:
        policy: the routing policy under test.
        requests: the trace.
        sim: the cluster model.
        rng: randomness for arrivals and the policy.
        index_config: residency index capacity and grace (default: :class:`RouterConfig`'s).
        residency: where the policy's ``held`` tokens come from (see the module docstring).
    """
    index_config = index_config or RouterConfig()
    clock = SimClock()
    index = ChunkResidencyIndex(index_config.max_keys_per_replica, index_config.decision_grace_s, clock)
    replicas = [_Replica(f"r{i}", sim.cache_tokens) for i in range(sim.num_replicas)]
    by_id = {r.replica_id: r for r in replicas}
    mean_tokens = statistics.fmean(r.hint.total_tokens for r in requests)
    full_service_s = sim.base_s + sim.compute_s_per_token * mean_tokens
    arrival_rate = sim.utilization * sim.num_replicas / full_service_s
    result = SimResult()
    now = next_stats = 0.0
    for i, request in enumerate(requests):
        now += rng.expovariate(arrival_rate)
        clock.now = now
        for replica in replicas:
            replica.advance(now)
        if residency == "index" and now >= next_stats:
            for replica in replicas:
                index.apply_stats(replica.replica_id, replica.stats())
            next_stats = now + sim.stats_period_s
        hint = request.hint
        chunk_spans = list(zip(hint.chunk_keys, hint.chunk_tokens))
        loads = [
            ReplicaLoad(
                r.replica_id,
                queue_len=len(r.in_flight),
                running_tokens=r.running_tokens,
                max_queue_len=sim.max_queue_len,
                held=_held(residency, index, r, hint, chunk_spans),
            )
            for r in replicas
        ]
        decision = policy.choose(hint, loads, rng)
        if residency == "index":
            index.record_decision(decision.replica_id, hint)
        replica = by_id[decision.replica_id]
        queue_len = len(replica.in_flight)
        hit = replica.cache.access(chunk_spans)
        service_s = sim.base_s + sim.compute_s_per_token * (hint.total_tokens - hit) + sim.hit_s_per_token * hit
        replica.free_at = max(now, replica.free_at) + service_s
        heapq.heappush(replica.in_flight, (replica.free_at, hint.total_tokens))
        replica.running_tokens += hint.total_tokens
        if i < sim.warmup_requests:
            continue
        result.chunk_tokens += hint.num_chunk_tokens
        result.hit_tokens += hit
        result.requests_per_replica[decision.replica_id] += 1
        result.reasons[decision.reason] += 1
        result.latencies_s.append(replica.free_at - now)
        result.queue_lens.append(queue_len)
    return result


def _held(
    residency: Residency,
    index: ChunkResidencyIndex,
    replica: _Replica,
    hint: RoutingHint,
    chunk_spans: list[tuple[str, int]],
) -> TierTokens:
    if residency == "index":
        return index.held_tokens(replica.replica_id, hint)
    if residency == "exact":
        return TierTokens(gpu=replica.cache.held_tokens(chunk_spans))
    return TierTokens()
