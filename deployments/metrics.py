"""Engine-replica metrics, exported through Ray's metrics (Prometheus on Ray's metrics port);
the API's request metrics are on the API port (``deployments.http.api_metrics``).

Pure functions turn what happened into :class:`Observation` s; :class:`MetricSink` applies
them to ``ray.serve.metrics`` objects (``ray.util.metrics`` that Serve tags with the deployment,
replica and application). The mapping is tested without Ray; only the sink touches it.

    replica:  epic_store_errors{tier}  epic_store_evictions{tier}  epic_store_bytes{tier,direction}
              epic_store_dropped_writes  epic_kv_free_blocks (gauge)  epic_queue_len (gauge)
    router:   epic_router_decisions{reason}   (router.serve_adapter)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

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
