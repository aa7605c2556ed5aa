"""The API port's ``/metrics``: Prometheus text through ``prometheus_client``, with vLLM's names
where the meaning is the same, ours (``epic:``) for chunk reuse, every series labelled
``model_name``.

    vllm:time_to_first_token_seconds      vllm:e2e_request_latency_seconds
    vllm:prompt_tokens_total              vllm:generation_tokens_total
    vllm:request_success_total{finished_reason}
    vllm:num_requests_running             vllm:num_requests_waiting   (this ingress's requests:
                                          waiting = no token yet, running = generating)
    vllm:kv_cache_usage_perc              (mean over the replicas, as last reported to this ingress)
    vllm:prefix_cache_queries_total       vllm:prefix_cache_hits_total     (tokens)
    epic:chunk_hit_tokens_total{tier}     epic:compiled_tokens_total       epic:recomputed_tokens_total
    epic:requests_total{endpoint,status}

Each ingress replica has its own registry; with several, scrape each (or use Ray's metrics).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from engine.outputs import RequestStats

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class APIMetrics:
    """The ingress's metrics for one served model."""

    def __init__(self, model_name: str):
        self.registry = CollectorRegistry()
        self.model_name = model_name
        r, m = self.registry, ["model_name"]
        self._ttft = Histogram("vllm:time_to_first_token_seconds", "Time to first token.", m, registry=r,
                               buckets=LATENCY_BUCKETS)
        self._e2e = Histogram("vllm:e2e_request_latency_seconds", "Request latency, arrival to last token.", m,
                              registry=r, buckets=LATENCY_BUCKETS)
        self._prompt = Counter("vllm:prompt_tokens", "Prompt tokens processed.", m, registry=r)
        self._generation = Counter("vllm:generation_tokens", "Tokens generated.", m, registry=r)
        self._success = Counter("vllm:request_success", "Finished requests by finish reason.",
                                [*m, "finished_reason"], registry=r)
        self._running = Gauge("vllm:num_requests_running", "Requests generating tokens.", m, registry=r)
        self._waiting = Gauge("vllm:num_requests_waiting", "Requests waiting for their first token.", m, registry=r)
        self._kv_usage = Gauge("vllm:kv_cache_usage_perc", "Fraction of KV cache pages in use (0-1).", m, registry=r)
        self._prefix_queries = Counter("vllm:prefix_cache_queries", "Prompt tokens looked up in the prefix cache.",
                                       m, registry=r)
        self._prefix_hits = Counter("vllm:prefix_cache_hits", "Prompt tokens found in the prefix cache.", m,
                                    registry=r)
        self._chunk_hits = Counter("epic:chunk_hit_tokens", "Prompt tokens linked from cached chunk KV, by tier.",
                                   [*m, "tier"], registry=r)
        self._compiled = Counter("epic:compiled_tokens", "Chunk tokens compiled because no tier held them.", m,
                                 registry=r)
        self._recomputed = Counter("epic:recomputed_tokens", "Prompt positions run through the model.", m,
                                   registry=r)
        self._requests = Counter("epic:requests", "HTTP generation requests by endpoint and status.",
                                 [*m, "endpoint", "status"], registry=r)
        self._kv_by_replica: dict[str, float] = {}

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def request_done(self, endpoint: str, status: int) -> None:
        self._requests.labels(self.model_name, endpoint, str(status)).inc()

    def sequence_started(self) -> None:
        self._waiting.labels(self.model_name).inc()

    def first_token(self, ttft_s: float) -> None:
        self._waiting.labels(self.model_name).dec()
        self._running.labels(self.model_name).inc()
        self._ttft.labels(self.model_name).observe(ttft_s)

    def sequence_ended(self, generating: bool) -> None:
        (self._running if generating else self._waiting).labels(self.model_name).dec()

    def kv_usage(self, replica_id: str, usage: float) -> None:
        self._kv_by_replica[replica_id] = usage
        self._kv_usage.labels(self.model_name).set(sum(self._kv_by_replica.values()) / len(self._kv_by_replica))

    def finished(self, finish_reasons: list[str], prompt_stats: list[RequestStats], completion_tokens: int,
                 e2e_s: float) -> None:
        """A request done: its sequences' finish reasons, each prompt's stats (computed once
        however many sequences shared it), all tokens generated."""
        name = self.model_name
        for reason in finish_reasons:
            self._success.labels(name, reason).inc()
        self._e2e.labels(name).observe(e2e_s)
        self._generation.labels(name).inc(completion_tokens)
        for s in prompt_stats:
            self._prompt.labels(name).inc(s.prompt_tokens)
            self._prefix_queries.labels(name).inc(s.prompt_tokens)
            self._prefix_hits.labels(name).inc(s.prefix_hit_tokens)
            for tier, tokens in sorted(s.chunk_hits_by_tier.items()):
                self._chunk_hits.labels(name, tier).inc(tokens)
            self._compiled.labels(name).inc(s.compiled_tokens)
            self._recomputed.labels(name).inc(s.recomputed_tokens)
