"""A permuted-document workload and an event-driven replica model for evaluating routing policies.

Workload: a pool of documents (KVSplit into chunks of at most ``chunk_tokens``); each request
is a shared system prefix, a random subset of documents in random order (popularity follows
Zipf(``zipf_s``); 0 is uniform), and a unique question. Prefix caching cannot reuse the
documents (their order changes); position-independent caching can, if the request lands on a
replica that holds them.

Replica model: one FIFO server per replica with an LRU chunk cache of ``cache_tokens``.
A request's service time is ``base_s + compute_s_per_token * missed tokens +
hit_s_per_token * hit chunk tokens``; its chunk hits are counted when it is routed (the cache
is updated in routing order). Every ``stats_period_s`` each replica publishes
:func:`router.stats.make_routing_stats` and the router's index applies it, as in Serve.
"""

from __future__ import annotations

import heapq
import random
import statistics
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from kvstore.keys import chunk_key
from router.config import RouterConfig
from router.hint import RoutingHint
from router.index import ChunkResidencyIndex
from router.policy import ReplicaLoad, RoutingDecision
from router.stats import ReplicaStats, make_routing_stats

SIM_MODEL_FINGERPRINT = "simulated-model"


@dataclass(frozen=True)
class WorkloadConfig:
    """Shape of the permuted-document workload.

    Attributes:
        num_documents: documents in the pool.
        docs_per_request: documents per request (distinct, random order).
        min_doc_tokens: shortest document.
        max_doc_tokens: longest document.
        chunk_tokens: KVSplit's largest chunk.
        prefix_tokens: shared system prefix per request (0 for none).
        question_tokens: unique tail per request.
        num_requests: requests in the trace.
        zipf_s: document popularity exponent (0 = uniform).
    """

    num_documents: int = 64
    docs_per_request: int = 4
    min_doc_tokens: int = 128
    max_doc_tokens: int = 1024
    chunk_tokens: int = 512
    prefix_tokens: int = 64
    question_tokens: int = 32
    num_requests: int = 2000
    zipf_s: float = 0.6

    def __post_init__(self) -> None:
        if not 1 <= self.docs_per_request <= self.num_documents:
            raise ValueError("docs_per_request must be between 1 and num_documents")
        if not 1 <= self.min_doc_tokens <= self.max_doc_tokens:
            raise ValueError("need 1 <= min_doc_tokens <= max_doc_tokens")
        if self.chunk_tokens < 1 or self.num_requests < 1:
            raise ValueError("chunk_tokens and num_requests must be >= 1")


@dataclass(frozen=True)
class Document:
    """A document: its chunks' keys and token counts."""

    doc_id: int
    chunk_keys: tuple[str, ...]
    chunk_tokens: tuple[int, ...]


@dataclass(frozen=True)
class SimRequest:
    """One request of the trace: which documents, in which order, and its routing hint."""

    doc_ids: tuple[int, ...]
    hint: RoutingHint


def make_documents(cfg: WorkloadConfig, rng: random.Random) -> list[Document]:
    """The document pool; chunk keys are real :func:`kvstore.keys.chunk_key` values."""
    docs = []
    for doc_id in range(cfg.num_documents):
        num_tokens = rng.randint(cfg.min_doc_tokens, cfg.max_doc_tokens)
        token_ids = [doc_id * 1_000_003 + i for i in range(num_tokens)]
        pieces = [token_ids[i : i + cfg.chunk_tokens] for i in range(0, num_tokens, cfg.chunk_tokens)]
        docs.append(
            Document(
                doc_id,
                tuple(chunk_key(SIM_MODEL_FINGERPRINT, p) for p in pieces),
                tuple(len(p) for p in pieces),
            )
        )
    return docs


def make_requests(
    cfg: WorkloadConfig, docs: Sequence[Document], rng: random.Random
) -> list[SimRequest]:
    """The request trace: random document subsets in random order behind a shared prefix."""
    weights = [1.0 / (rank + 1) ** cfg.zipf_s for rank in range(len(docs))]
    prefix_key = chunk_key(SIM_MODEL_FINGERPRINT, [-1] * cfg.prefix_tokens) if cfg.prefix_tokens else None
    requests = []
    for _ in range(cfg.num_requests):
        chosen: dict[int, None] = {}
        while len(chosen) < cfg.docs_per_request:
            chosen[rng.choices(range(len(docs)), weights)[0]] = None
        order = list(chosen)
        rng.shuffle(order)
        keys = tuple(k for d in order for k in docs[d].chunk_keys)
        tokens = tuple(n for d in order for n in docs[d].chunk_tokens)
        hint = RoutingHint(
            chunk_keys=keys,
            chunk_tokens=tokens,
            prefix_tokens=cfg.prefix_tokens,
            prefix_key=prefix_key,
            total_tokens=cfg.prefix_tokens + sum(tokens) + cfg.question_tokens,
        )
        requests.append(SimRequest(tuple(order), hint))
    return requests


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
    """

    num_replicas: int = 2
    cache_tokens: int = 12_000
    utilization: float = 0.7
    base_s: float = 0.01
    compute_s_per_token: float = 2e-5
    hit_s_per_token: float = 1e-6
    stats_period_s: float = 1.0
    max_queue_len: int = 32


class Policy(Protocol):
    def choose(
        self, hint: RoutingHint | None, replicas: Sequence[ReplicaLoad], rng: random.Random
    ) -> RoutingDecision: ...


@dataclass
class SimResult:
    """What one simulated run measured."""

    chunk_tokens: int = 0
    hit_tokens: int = 0
    requests_per_replica: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)

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

    def advance(self, now: float) -> None:
        while self.in_flight and self.in_flight[0][0] <= now:
            heapq.heappop(self.in_flight)

    def stats(self) -> ReplicaStats:
        d = make_routing_stats(
            queue_len=len(self.in_flight),
            running_tokens=sum(n for _, n in self.in_flight),
            free_blocks=0,
            total_blocks=0,
            gpu_keys=self.cache.keys_mru(),
            host_keys=(),
            max_keys_per_tier=len(self.cache.keys_mru()),
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
) -> SimResult:
    """Route a trace through simulated replicas and measure chunk hits and latency.

    Every policy sees the same inputs: loads, and held tokens from a residency index that
    learns from decisions and is corrected by the replicas' stats.

    Args:
        policy: the routing policy under test.
        requests: the trace.
        sim: the cluster model.
        rng: randomness for arrivals and the policy.
        index_config: residency index capacity and grace (default: :class:`RouterConfig`'s).
    """
    index_config = index_config or RouterConfig()
    clock = SimClock()
    index = ChunkResidencyIndex(
        index_config.max_keys_per_replica, index_config.decision_grace_s, clock
    )
    replicas = [_Replica(f"r{i}", sim.cache_tokens) for i in range(sim.num_replicas)]
    mean_tokens = statistics.fmean(r.hint.total_tokens for r in requests)
    full_service_s = sim.base_s + sim.compute_s_per_token * mean_tokens
    arrival_rate = sim.utilization * sim.num_replicas / full_service_s
    result = SimResult()
    now = next_stats = 0.0
    for request in requests:
        now += rng.expovariate(arrival_rate)
        clock.now = now
        for replica in replicas:
            replica.advance(now)
        if now >= next_stats:
            for replica in replicas:
                index.apply_stats(replica.replica_id, replica.stats())
            next_stats = now + sim.stats_period_s
        hint = request.hint
        loads = [
            ReplicaLoad(
                r.replica_id,
                queue_len=len(r.in_flight),
                running_tokens=sum(n for _, n in r.in_flight),
                max_queue_len=sim.max_queue_len,
                held=index.held_tokens(r.replica_id, hint),
            )
            for r in replicas
        ]
        decision = policy.choose(hint, loads, rng)
        index.record_decision(decision.replica_id, hint)
        replica = next(r for r in replicas if r.replica_id == decision.replica_id)
        hit = replica.cache.access(zip(hint.chunk_keys, hint.chunk_tokens))
        service_s = (
            sim.base_s
            + sim.compute_s_per_token * (hint.total_tokens - hit)
            + sim.hit_s_per_token * hit
        )
        start = max(now, replica.free_at)
        replica.free_at = start + service_s
        heapq.heappush(replica.in_flight, (replica.free_at, hint.total_tokens))
        result.chunk_tokens += hint.num_chunk_tokens
        result.hit_tokens += hit
        result.requests_per_replica[decision.replica_id] += 1
        result.reasons[decision.reason] += 1
        result.latencies_s.append(replica.free_at - now)
    return result
