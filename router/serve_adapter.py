"""Ray Serve adapter: :class:`CacheAwareRequestRouter`, the cache-aware policy as a RequestRouter.

The only file of ``router/`` that imports Ray. Configure a deployment with::

    RequestRouterConfig(
        request_router_class="router.serve_adapter:CacheAwareRequestRouter",
        request_router_kwargs=RouterConfig(...).to_dict(),
        request_routing_stats_period_s=1.0,
    )

Per routing attempt (all synchronous and bounded by replicas x chunks; no RPC, no ``ray.get``,
so the event loop never waits on us):

    candidates -> apply changed routing_stats to the index -> ReplicaLoad per candidate
      (queue: Serve's queue-length cache, else the stats; held tokens: the index)
      -> CacheAwarePolicy.choose -> record the decision in the index
      -> ranked groups [[chosen], [all others]]  (Serve probes, and falls back on rejection)

The request's :class:`router.hint.RoutingHint` is ``args[0].routing_hint`` (or a
``routing_hint`` keyword argument); without one the request is routed by load alone.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from typing import Any

from ray.serve.request_router import PendingRequest, ReplicaID, RequestRouter, RunningReplica
from ray.util.metrics import Counter

from router.config import RouterConfig
from router.hint import RoutingHint
from router.index import ChunkResidencyIndex, TierTokens
from router.policy import CacheAwarePolicy, ReplicaLoad, RoutingDecision
from router.stats import ReplicaStats

logger = logging.getLogger(__name__)

# Decisions awaiting their request's on_request_routed (for the metric); bounded because a
# request cancelled before routing never reports back.
_MAX_PENDING_DECISIONS = 4096


def routing_hint_of(pending_request: PendingRequest | None) -> RoutingHint | None:
    """The request's routing hint: ``args[0].routing_hint``, else a ``routing_hint`` kwarg."""
    if pending_request is None:
        return None
    hint = None
    if pending_request.args:
        hint = getattr(pending_request.args[0], "routing_hint", None)
    if hint is None:
        hint = pending_request.kwargs.get("routing_hint")
    if hint is not None and not isinstance(hint, RoutingHint):
        # A caller's bug must not stall routing: route it by load and say so.
        logger.warning("ignoring routing_hint of type %s (not a RoutingHint)", type(hint).__name__)
        return None
    return hint


class CacheAwareRequestRouter(RequestRouter):
    """Routes each request to the replica holding most of its chunks, unless load says not."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._configure(RouterConfig())
        self._decisions_counter = Counter(
            "epic_router_decisions",
            description="Routing decisions by reason: affinity (held chunks), load (holders "
            "too busy), random (nothing held; power-of-two).",
            tag_keys=("deployment", "reason"),
        )
        self._decisions_counter.set_default_tags({"deployment": self._deployment_id.name})

    def initialize_state(self, **kwargs: Any) -> None:
        """Take the :class:`RouterConfig` dict from ``request_router_kwargs``.

        Raises:
            ValueError: an unknown key or a bad value.
        """
        self._configure(RouterConfig.from_dict(kwargs))

    def _configure(self, config: RouterConfig) -> None:
        self._config = config
        self._policy = CacheAwarePolicy(config)
        self._index = ChunkResidencyIndex(
            config.max_keys_per_replica, config.decision_grace_s, clock=self._get_curr_time_s
        )
        self._rng = random.Random(config.seed)
        # replica id -> (the routing_stats dict last applied, when, its parsed form)
        self._applied: dict[str, tuple[dict, float, ReplicaStats]] = {}
        # internal request id -> (replica chosen, reason)
        self._pending: OrderedDict[str, tuple[str, str]] = OrderedDict()

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        """One routing attempt: the policy's pick first, then every other candidate."""
        if not candidate_replicas:
            return []
        hint = routing_hint_of(pending_request)
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        loads = [self._load(replica_id, r, hint) for replica_id, r in by_id.items()]
        decision = self._policy.choose(hint, loads, self._rng)
        if hint is not None:
            self._index.record_decision(decision.replica_id, hint)
        if pending_request is not None:
            self._remember(pending_request, decision)
        chosen = by_id[decision.replica_id]
        others = [r for r in candidate_replicas if r is not chosen]
        return [[chosen], others] if others else [[chosen]]

    def on_request_routed(
        self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any
    ) -> None:
        """The replica accepted the request: learn its chunks there and count the decision."""
        hint = routing_hint_of(pending_request)
        if hint is not None:
            self._index.record_decision(replica_id.unique_id, hint)
        decided = self._pending.pop(pending_request.metadata.internal_request_id, None)
        if decided is not None:
            chosen, reason = decided
            # The policy's pick rejected the request and Serve used a less preferred replica.
            if chosen != replica_id.unique_id:
                reason = "load"
            self._decisions_counter.inc(tags={"reason": reason})

    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        """Serve's replica set changed: forget the replicas that left."""
        super().update_replicas(replicas)
        live = {r.replica_id.unique_id for r in replicas}
        self._index.retain_replicas(live)
        for replica_id in [r for r in self._applied if r not in live]:
            del self._applied[replica_id]

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        """A replica died: it holds nothing any more."""
        super().on_replica_actor_died(replica_id)
        self._index.remove_replica(replica_id.unique_id)
        self._applied.pop(replica_id.unique_id, None)

    def _load(self, replica_id: str, replica: RunningReplica, hint: RoutingHint | None) -> ReplicaLoad:
        stats = self._sync_stats(replica_id, replica.routing_stats)
        # Serve's cache counts requests sent and finished here and what replicas answer on
        # each request; it is empty (None) when Serve runs without it.
        queue_len = self.replica_queue_len_cache.get(replica.replica_id)
        return ReplicaLoad(
            replica_id,
            queue_len=stats.queue_len if queue_len is None else queue_len,
            running_tokens=stats.running_tokens,
            max_queue_len=replica.max_ongoing_requests,
            held=self._index.held_tokens(replica_id, hint) if hint is not None else TierTokens(),
        )

    def _sync_stats(self, replica_id: str, raw: dict) -> ReplicaStats:
        """Apply a replica's stats to the index when they changed, or again after the grace
        period (Serve rebroadcasts only changes; re-applying drops stale learned entries)."""
        now = self._get_curr_time_s()
        applied = self._applied.get(replica_id)
        if applied is not None and applied[0] is raw and now - applied[1] <= self._config.decision_grace_s:
            return applied[2]
        try:
            stats = ReplicaStats.from_dict(raw)
        except ValueError as e:
            logger.warning("ignoring routing stats of replica %s: %s", replica_id, e)
            stats = ReplicaStats()
        self._index.apply_stats(replica_id, stats)
        self._applied[replica_id] = (raw, now, stats)
        return stats

    def _remember(self, pending_request: PendingRequest, decision: RoutingDecision) -> None:
        request_id = pending_request.metadata.internal_request_id
        self._pending[request_id] = (decision.replica_id, decision.reason)
        self._pending.move_to_end(request_id)
        while len(self._pending) > _MAX_PENDING_DECISIONS:
            self._pending.popitem(last=False)
