"""Serving metrics, exported through Ray's metrics (Prometheus on Ray's metrics port).

Pure functions turn what happened into :class:`Observation` s; :class:`MetricSink` applies
them to ``ray.serve.metrics`` objects (``ray.util.metrics`` that Serve tags with the deployment,
replica and application). The mapping is tested without Ray; only the sink touches it.

    ingress:  epic_requests{endpoint,status}      epic_ttft_seconds{endpoint}
              epic_e2e_latency_seconds{endpoint}  epic_prompt_tokens / epic_completion_tokens
              epic_cache_hit_tokens{kind=prefix|chunk,tier}
              epic_compiled_tokens                epic_recomputed_tokens
    replica:  epic_store_errors{tier}  epic_store_evictions{tier}  epic_store_bytes{tier,direction}
              epic_store_dropped_writes  epic_kv_free_blocks (gauge)  epic_queue_len (gauge)
    router:   epic_router_decisions{reason}   (router.serve_adapter)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.outputs import RequestStats

Kind = Literal["counter", "histogram", "gauge"]

# Latency buckets (seconds): sub-10 ms CPU toys up to minute-long GPU prompts.
LATENCY_BOUNDARIES = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    kind: Kind
    description: str
    tag_keys: tuple[str, ...] = ()


SPECS: dict[str, MetricSpec] = {s.name: s for s in [
    MetricSpec("epic_requests", "counter", "HTTP requests by endpoint and status code.", ("endpoint", "status")),
    MetricSpec("epic_ttft_seconds", "histogram", "Time to first token as the ingress sees it.", ("endpoint",)),
    MetricSpec("epic_e2e_latency_seconds", "histogram", "Request latency, arrival to last token.", ("endpoint",)),
    MetricSpec("epic_prompt_tokens", "counter", "Prompt tokens served.", ("endpoint",)),
    MetricSpec("epic_completion_tokens", "counter", "Tokens generated.", ("endpoint",)),
    MetricSpec("epic_cache_hit_tokens", "counter",
               "Prompt tokens reused: kind=prefix (prefix cache) or chunk (linked chunk KV, by tier).",
               ("kind", "tier")),
    MetricSpec("epic_compiled_tokens", "counter", "Chunk tokens compiled because no tier held them."),
    MetricSpec("epic_recomputed_tokens", "counter", "Prompt positions run through the model (recompute + prefill)."),
    MetricSpec("epic_store_errors", "counter", "Chunk store tier failures (each read as a miss).", ("tier",)),
    MetricSpec("epic_store_evictions", "counter", "Chunks evicted from a bounded store tier.", ("tier",)),
    MetricSpec("epic_store_bytes", "counter", "Chunk KV bytes written into / read from a tier.", ("tier", "direction")),
    MetricSpec("epic_store_dropped_writes", "counter", "Persistent writes dropped (queue full) or failed."),
    MetricSpec("epic_kv_free_blocks", "gauge", "Free pages of the replica's paged KV pool."),
    MetricSpec("epic_queue_len", "gauge", "Requests waiting or running on the replica."),
]}


@dataclass(frozen=True, slots=True)
class Observation:
    """One update: add ``value`` to a counter, observe it in a histogram, or set a gauge."""

    name: str
    value: float
    tags: Mapping[str, str] = field(default_factory=dict)


def request_observations(endpoint: str, stats: RequestStats, ttft_s: float | None,
                         e2e_s: float) -> list[Observation]:
    """What one finished generation request adds to the metrics."""
    tags = {"endpoint": endpoint}
    obs = [
        Observation("epic_e2e_latency_seconds", e2e_s, tags),
        Observation("epic_prompt_tokens", stats.prompt_tokens, tags),
        Observation("epic_completion_tokens", stats.completion_tokens, tags),
        Observation("epic_compiled_tokens", stats.compiled_tokens),
        Observation("epic_recomputed_tokens", stats.recomputed_tokens),
    ]
    if ttft_s is not None:
        obs.append(Observation("epic_ttft_seconds", ttft_s, tags))
    if stats.prefix_hit_tokens:
        obs.append(Observation("epic_cache_hit_tokens", stats.prefix_hit_tokens, {"kind": "prefix", "tier": "gpu"}))
    for tier, tokens in sorted(stats.chunk_hits_by_tier.items()):
        if tokens:
            obs.append(Observation("epic_cache_hit_tokens", tokens, {"kind": "chunk", "tier": tier}))
    return [o for o in obs if o.value or SPECS[o.name].kind != "counter"]


def store_observations(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[Observation]:
    """Counter increments between two ``TieredStore.stats()`` snapshots."""
    obs = []
    prev_tiers = previous.get("tiers", {})
    for tier, now in sorted(current.get("tiers", {}).items()):
        before = prev_tiers.get(tier, {})
        for key, name, extra in (("errors", "epic_store_errors", {}), ("evictions", "epic_store_evictions", {}),
                                 ("bytes_in", "epic_store_bytes", {"direction": "in"}),
                                 ("bytes_out", "epic_store_bytes", {"direction": "out"})):
            delta = now.get(key, 0) - before.get(key, 0)
            if delta > 0:
                obs.append(Observation(name, delta, {"tier": tier, **extra}))
    writes_now, writes_before = current.get("writes", {}), previous.get("writes", {})
    dropped = sum(writes_now.get(k, 0) - writes_before.get(k, 0) for k in ("dropped", "failed"))
    if dropped > 0:
        obs.append(Observation("epic_store_dropped_writes", dropped))
    return obs


class MetricSink:
    """Ray metric objects for a set of metric names, created in the process that records."""

    def __init__(self, names: Iterable[str]):
        from ray.serve import metrics

        self._metrics = {}
        for name in names:
            spec = SPECS[name]
            if spec.kind == "counter":
                m = metrics.Counter(name, description=spec.description, tag_keys=spec.tag_keys)
            elif spec.kind == "gauge":
                m = metrics.Gauge(name, description=spec.description, tag_keys=spec.tag_keys)
            else:
                m = metrics.Histogram(name, description=spec.description, boundaries=LATENCY_BOUNDARIES,
                                      tag_keys=spec.tag_keys)
            self._metrics[name] = m

    def record(self, observations: Iterable[Observation]) -> None:
        for o in observations:
            metric = self._metrics[o.name]
            tags = dict(o.tags) or None
            kind = SPECS[o.name].kind
            if kind == "counter":
                metric.inc(o.value, tags=tags)
            elif kind == "gauge":
                metric.set(o.value, tags=tags)
            else:
                metric.observe(o.value, tags=tags)
