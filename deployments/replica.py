"""The engine-replica deployment: one Engine and its tiered chunk store per replica.

Serve calls it through handles from the ingress (``generate`` streams, ``compile`` returns)
and pulls ``record_routing_stats`` every ``routing_stats_period_s`` for the router. Engine work
runs on the AsyncEngine's own thread, so this event loop only moves records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from deployments.metrics import MetricSink, Observation, store_observations
from deployments.protocol import (
    Accepted,
    CompileRequest,
    CompileResult,
    EngineRequest,
    Failed,
    ModelInfo,
    Rejected,
    StreamDelta,
)
from engine.config import EngineConfig
from kvstore.builder import build_store
from kvstore.config import StoreConfig
from router.stats import make_routing_stats

logger = logging.getLogger(__name__)

# How long the documents API waits for the persistent tier to take compiled chunks.
FLUSH_TIMEOUT_S = 60.0

_METRICS = ("epic_store_errors", "epic_store_evictions", "epic_store_bytes", "epic_store_dropped_writes",
            "epic_kv_free_blocks", "epic_queue_len")


class EngineReplica:
    """Owns an :class:`engine.AsyncEngine` over an :class:`engine.Engine` whose chunk source is
    the replica's :class:`kvstore.tiered.TieredStore`."""

    def __init__(self, engine_config: EngineConfig, store_config: StoreConfig):
        from engine import AsyncEngine, Engine

        engine = Engine(engine_config)
        # The store's records are checked against the model fingerprint the engine computed.
        self.store = build_store(store_config, engine.model_fingerprint)
        self.store_fingerprint = engine.model_fingerprint
        engine.attach_chunk_source(self.store)
        self.engine = AsyncEngine(engine)
        self.replica_id = serve.get_replica_context().replica_id.unique_id
        self._metrics = MetricSink(_METRICS)
        self._store_stats = self.store.stats()
        logger.info("engine replica %s ready: model %s, %d KV blocks", self.replica_id, engine_config.model,
                    engine.block_pool.num_blocks)

    async def generate(self, request: EngineRequest) -> AsyncIterator[Accepted | Rejected | Failed | StreamDelta]:
        """Run one request: ``Accepted`` (or ``Rejected``), then its deltas (or ``Failed``).

        Closing the stream (the client went away) aborts the request and frees its KV blocks.
        """
        from engine.async_engine import EngineError

        try:
            stream = await self.engine.add_request(list(request.segments), request.sampling, request.link_policy,
                                                   request.request_id, request.cache_scope)
        except ValueError as e:
            yield Rejected(str(e))
            return
        load = self.engine.load()
        yield Accepted(self.replica_id, 1.0 - load.free_blocks / load.total_blocks)
        try:
            async for out in stream:
                yield _delta(out)
        except (EngineError, ValueError) as e:
            logger.warning("request %s failed: %s", request.request_id, e)
            yield Failed(str(e))

    def model_info(self) -> ModelInfo:
        engine = self.engine.engine
        return ModelInfo(engine.max_model_len, engine.spec.vocab_size,
                         engine.block_pool.num_blocks * engine.config.block_size)

    def check_health(self) -> None:
        """Serve calls this every ``health_check_period_s``: raising marks the replica unhealthy,
        and Serve replaces it (a dead step loop would otherwise hang every request)."""
        self.engine.check_health()

    async def compile(self, request: CompileRequest) -> CompileResult:
        """Make chunks resident and stored (the documents API), then wait for the persistent tier.

        Missing chunks are compiled inside the engine's normal steps, next to running requests;
        held ones are only touched.
        """
        await self.engine.compile_chunks([list(ids) for ids in request.chunk_token_ids], request.cache_scope)
        persisted = await asyncio.to_thread(self.store.flush, FLUSH_TIMEOUT_S)
        return CompileResult(self.replica_id, persisted)

    def record_routing_stats(self) -> dict[str, Any]:
        """Load and chunk residency for the router (see :mod:`router.stats`), plus the chunk
        pins held (``pinned_chunks``, for operators; the router ignores it); also the moment the
        replica's gauges and store counters are published."""
        load = self.engine.load()
        # Most recently used first; list() of the pool's keys is one atomic copy under the GIL.
        gpu_keys = list(reversed(self.engine.engine.chunk_pool.keys()))
        host_keys = list(reversed(self.store.resident_keys("memory"))) if self.store.memory is not None else []
        stats = make_routing_stats(
            queue_len=load.num_waiting + load.num_running,
            running_tokens=load.running_tokens,
            free_blocks=load.free_blocks,
            total_blocks=load.total_blocks,
            gpu_keys=gpu_keys,
            host_keys=host_keys,
        )
        current = self.store.stats()
        self._metrics.record([
            *store_observations(self._store_stats, current),
            Observation("epic_kv_free_blocks", load.free_blocks),
            Observation("epic_queue_len", load.num_waiting + load.num_running),
        ])
        self._store_stats = current
        return {**stats, "pinned_chunks": load.pinned_chunks}

    def __del__(self) -> None:
        # Serve calls this on graceful shutdown: stop the engine thread, finish store writes.
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.shutdown()
        store = getattr(self, "store", None)
        if store is not None:
            store.close()


def _delta(out) -> StreamDelta:
    """One engine output as the delta the ingress receives (logprobs of the new tokens only)."""
    n = len(out.new_token_ids)
    logprobs = tuple(out.logprobs[len(out.logprobs) - n:]) if out.logprobs is not None and n else None
    top = tuple(out.top_logprobs[len(out.top_logprobs) - n:]) if out.top_logprobs is not None and n else None
    first = n > 0 and len(out.token_ids) == n
    prompt = tuple(out.prompt_logprobs) if out.prompt_logprobs is not None and first else None
    return StreamDelta(tuple(out.new_token_ids), out.new_text, out.finished,
                       out.finish_reason if out.finished else None, out.stats if out.finished else None,
                       out.index, logprobs, top, out.cumulative_logprob if out.finished else None,
                       out.stop_reason, prompt)
