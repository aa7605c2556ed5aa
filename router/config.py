"""The router's one configuration object (embedded in the serving YAML under ``router:``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from configs.typed import from_mapping

FALLBACKS = ("power_of_two", "least_loaded")


@dataclass(frozen=True)
class RouterConfig:
    """Knobs of the cache-aware policy and its residency index.

    A replica's score for a request is, in token-equivalents::

        gpu_weight * gpu_tokens + host_weight * host_tokens + cluster_weight * cluster_tokens
          - queue_penalty_tokens * queue_len - running_token_penalty * running_tokens

    Attributes:
        gpu_weight: value of a held token in the engine's device pool (no transfer at all).
        host_weight: value of a held token in the replica's host memory (a host-to-device copy).
        cluster_weight: value of a token only another replica holds (fetched from the cluster
            store instead of computed).
        queue_penalty_tokens: score subtracted per request queued or running on the replica.
        running_token_penalty: score subtracted per token the replica is running (from stats).
        imbalance_threshold: a replica is considered for affinity only while its queue is at
            most this many requests longer than the least-loaded replica's.
        min_affinity_tokens: a replica must hold at least this many more of the request's
            tokens locally than the replica holding least, or nothing counts as held.
        fallback: how to pick when affinity does not apply: ``power_of_two`` (two random
            replicas, the less loaded wins) or ``least_loaded`` (all replicas).
        max_keys_per_replica: residency index capacity per replica (LRU beyond it).
        decision_grace_s: a key learned from a routing decision survives stats that omit it
            for this long (stats lag up to one period; make it a few periods).
        seed: seed of the router's random generator (None: seeded from the OS).
    """

    gpu_weight: float = 1.0
    host_weight: float = 0.7
    cluster_weight: float = 0.3
    queue_penalty_tokens: float = 512.0
    running_token_penalty: float = 0.0
    imbalance_threshold: int = 4
    min_affinity_tokens: int = 64
    fallback: str = "power_of_two"
    max_keys_per_replica: int = 8192
    decision_grace_s: float = 30.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.gpu_weight >= self.host_weight >= self.cluster_weight >= 0:
            raise ValueError(
                "tier weights must satisfy gpu_weight >= host_weight >= cluster_weight >= 0, got "
                f"{self.gpu_weight}, {self.host_weight}, {self.cluster_weight}"
            )
        for name in ("queue_penalty_tokens", "running_token_penalty", "imbalance_threshold",
                     "min_affinity_tokens", "decision_grace_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"RouterConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.fallback not in FALLBACKS:
            raise ValueError(
                f"RouterConfig.fallback {self.fallback!r} is not one of {', '.join(FALLBACKS)}"
            )
        if self.max_keys_per_replica < 1:
            raise ValueError(
                f"RouterConfig.max_keys_per_replica must be >= 1, got {self.max_keys_per_replica}"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> RouterConfig:
        """Build from a plain dict (YAML), rejecting unknown keys and ill-typed values.

        Raises:
            ValueError: a key is unknown (the message names it and lists the valid ones) or a
                value has the wrong type or range.
        """
        return from_mapping(cls, None if d is None else dict(d), "router")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (``RequestRouterConfig.request_router_kwargs`` needs one)."""
        return dataclasses.asdict(self)

