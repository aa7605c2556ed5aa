"""Gets every chunk a request links onto the device: chunk pool, then the chunk source, then
compile jobs (deduplicated by key, run inside the normal batched steps)."""

from __future__ import annotations

from collections import deque

import torch

from engine.chunk_pool import ChunkPool
from engine.chunk_source import ChunkSource
from engine.request import CompileJob, Request
from kvstore.keys import ChunkKey

POOL_TIER = "gpu"  # the tier name reported for chunks found resident in the engine's pool


class ChunkManager:
    """Owns compile jobs and the pins requests hold on pooled chunks until they link."""

    def __init__(self, pool: ChunkPool, source: ChunkSource | None, bos_token_id: int | None,
                 device: torch.device, dtype: torch.dtype):
        self.pool = pool
        self.source = source
        self.bos = [] if bos_token_id is None else [bos_token_id]
        self.device = device
        self.dtype = dtype
        self.jobs: dict[ChunkKey, CompileJob] = {}  # queued or running
        self.queue: deque[CompileJob] = deque()  # not started yet
        self._waiters: dict[ChunkKey, list[Request]] = {}

    def resolve(self, request: Request, chunk_token_ids: list[tuple[int, ...]], count_stats: bool) -> None:
        """Pin resident chunks, fetch stored ones, start or join compile jobs for the rest.

        ``count_stats`` is False when a preempted request resolves again (counted once).
        """
        stats = request.stats
        for key, ids in zip(request.chunk_keys, chunk_token_ids):
            tier = self._find(key)
            if tier is None:
                self._waiters.setdefault(key, []).append(request)
                if key not in self.jobs:
                    self._start_job(key, ids)
                if count_stats:
                    stats.compiled_tokens += len(ids)
                continue
            request.pinned.append(key)
            if count_stats:
                stats.chunk_hit_tokens += len(ids)
                stats.chunk_hits_by_tier[tier] = stats.chunk_hits_by_tier.get(tier, 0) + len(ids)
        request.chunks_resolved = True

    def _find(self, key: ChunkKey) -> str | None:
        """The tier a chunk was found in, pinned in the pool for the caller; None: compile it."""
        if key in self.jobs:
            return None
        if key in self.pool:
            self.pool.pin(key)
            return POOL_TIER
        hit = self.source.get_chunk(key) if self.source is not None else None
        if hit is None:
            return None
        self.pool.put(key, hit.kv.to(device=self.device, dtype=self.dtype), pins=1)
        return hit.tier

    def _start_job(self, key: ChunkKey, ids: tuple[int, ...]) -> CompileJob:
        bos = [] if list(ids[:1]) == self.bos else self.bos  # a chunk that starts with BOS is compiled with it
        tokens = [*bos, *ids]
        job = CompileJob(key, tokens, len(bos), [(0, len(tokens))])
        self.jobs[key] = job
        self.queue.append(job)
        return job

    def compile_only(self, key: ChunkKey, ids: tuple[int, ...]) -> bool:
        """Queue a compile with no waiting request (warm-up); False if already held or queued."""
        if key in self.jobs or key in self.pool:
            return False
        self._start_job(key, ids)
        return True

    def ready(self, request: Request) -> bool:
        return all(key in self.pool and key not in self.jobs for key in request.chunk_keys)

    def finish_job(self, job: CompileJob) -> torch.Tensor:
        """Assemble the captured KV, make it resident, hand pins to waiters, store it."""
        kv = torch.cat(job.parts, dim=2)  # [num_layers, 2, num_chunk_tokens, Hkv, D]
        job.parts.clear()
        del self.jobs[job.key]
        waiters = self._waiters.pop(job.key, [])
        self.pool.put(job.key, kv, pins=len(waiters))
        for request in waiters:
            request.pinned.append(job.key)
        if self.source is not None:
            self.source.put_chunk(job.key, kv if kv.device.type == "cpu" else kv.cpu())
        return kv

    def release(self, request: Request) -> None:
        """Drop a request's pins and its places in compile queues (after linking, on abort)."""
        for key in request.pinned:
            self.pool.unpin(key)
        request.pinned.clear()
        for key in request.chunk_keys:
            waiters = self._waiters.get(key)
            if waiters and request in waiters:
                waiters.remove(request)
