"""Reference policies the router is measured against in the simulation.

- :class:`PrefixTreePolicy` re-implements the decision rule of Ray Serve's
  ``PrefixCacheAffinityRouter`` (with its default of no tree eviction): when the queues are
  balanced (longest minus shortest at most ``imbalance_threshold``), the replicas owning the
  longest matched prefix of the request's text, if the match covers at least
  ``match_rate_threshold`` of the text, else the replicas that have been sent the fewest
  characters; the least loaded of that group wins. When imbalanced (or the group is full):
  power of two choices. Every routed text is inserted into the tree for its replica.
  The text is the request's spans in order (shared prefix, chunks) and its unique question;
  since distinct spans never share a first token here, matching whole spans equals
  matching characters.
- :class:`OraclePolicy` is told every replica's cache exactly (``residency="exact"`` in
  :func:`sim.cluster.simulate`) and, under the same load bound as the cache-aware policy,
  picks the replica holding the most of the request's chunk tokens.

Both are pure: state, load and randomness come in as arguments or live in the object.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from router.hint import RoutingHint
from router.policy import ReplicaLoad, RoutingDecision, power_of_two


def _open(replicas: Sequence[ReplicaLoad]) -> list[ReplicaLoad]:
    return [r for r in replicas if not r.saturated] or list(replicas)


@dataclass(slots=True)
class _Node:
    tokens: int
    tenants: set[str] = field(default_factory=set)
    children: dict[str, _Node] = field(default_factory=dict)


class PrefixTreePolicy:
    """Longest-prefix affinity over a tree of every text routed so far.

    Args:
        imbalance_threshold: queues differing by more than this are imbalanced.
        match_rate_threshold: least share of the text the matched prefix must cover.
    """

    def __init__(self, imbalance_threshold: float = float("inf"), match_rate_threshold: float = 0.1) -> None:
        self.imbalance_threshold = imbalance_threshold
        self.match_rate_threshold = match_rate_threshold
        self._root = _Node(0)
        self._chars: dict[str, int] = {}  # tokens inserted per replica (each tree node counted once)

    def choose(
        self, hint: RoutingHint | None, replicas: Sequence[ReplicaLoad], rng: random.Random
    ) -> RoutingDecision:
        """Pick a replica and insert the request's text for it."""
        for r in replicas:
            self._chars.setdefault(r.replica_id, 0)
        group = self._group(hint, replicas) if hint is not None else []
        open_group = [r for r in group if not r.saturated]
        if open_group:
            chosen, reason = min(open_group, key=lambda r: r.queue_len), "affinity"
        else:
            chosen, reason = power_of_two(_open(replicas), rng), "load"
        if hint is not None:
            self._insert(hint, chosen.replica_id)
        return RoutingDecision(chosen.replica_id, reason)

    def _group(self, hint: RoutingHint, replicas: Sequence[ReplicaLoad]) -> list[ReplicaLoad]:
        queues = [r.queue_len for r in replicas]
        if max(queues) - min(queues) > self.imbalance_threshold:
            return []
        available = {r.replica_id for r in replicas}
        node, matched = self._root, 0
        for key, num_tokens in hint.spans():
            child = node.children.get(key)
            if child is None or not child.tenants & available:
                break
            node, matched = child, matched + num_tokens
        if matched / hint.total_tokens >= self.match_rate_threshold:
            owners = node.tenants & available if node is not self._root else available
            return [r for r in replicas if r.replica_id in owners]
        fewest = min(self._chars.values())
        return [r for r in replicas if self._chars[r.replica_id] == fewest]

    def _insert(self, hint: RoutingHint, replica_id: str) -> None:
        node = self._root
        for key, num_tokens in hint.spans():
            node = node.children.setdefault(key, _Node(num_tokens))
            if replica_id not in node.tenants:
                node.tenants.add(replica_id)
                self._chars[replica_id] += num_tokens
        # The unique question: a leaf nobody else will match, still counted for its replica.
        self._chars[replica_id] += hint.total_tokens - hint.prefix_tokens - hint.num_chunk_tokens


class OraclePolicy:
    """Most exactly-held chunk tokens among the replicas within the load bound.

    Args:
        imbalance_threshold: a replica is eligible while its queue is at most this many
            requests longer than the least-loaded open replica's (the cache-aware policy's bound).
    """

    def __init__(self, imbalance_threshold: int) -> None:
        self.imbalance_threshold = imbalance_threshold

    def choose(
        self, hint: RoutingHint | None, replicas: Sequence[ReplicaLoad], rng: random.Random
    ) -> RoutingDecision:
        """Pick the eligible replica holding most (shorter queue, then input order, on ties)."""
        open_replicas = _open(replicas)
        min_queue = min(r.queue_len for r in open_replicas)
        eligible = [r for r in open_replicas if r.queue_len - min_queue <= self.imbalance_threshold]
        best = max(eligible, key=lambda r: (r.held.local, -r.queue_len))
        if hint is None or best.held.local == 0:
            return RoutingDecision(power_of_two(open_replicas, rng).replica_id, "random")
        return RoutingDecision(best.replica_id, "affinity")
