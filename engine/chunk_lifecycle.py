"""A chunk's life in the engine, owned in one place:

    lookup    the engine's chunk pool, then the chunk source (the tiered store): pinned for
              the request until it links
    compile   otherwise a compile job (one per key, joined by every request that needs it):
              [BOS] + chunk tokens prefilled alone inside the normal batched steps, in KV
              blocks of its own
    capture   the job's rows' NoPE K/V at every layer, gathered by the model runner
    store     the finished KV into the pool (pinned for its waiters) and the chunk source
    link      at admission, each linked chunk's KV handed to the model runner to write at its
              absolute positions; the request's pins released

The scheduler asks this class what to do (``resolve``, ``ready``, ``start_next_job``,
``links``); the engine reports each step's captures (``absorb``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from engine.chunk_pool import ChunkPool
from engine.chunk_source import ChunkSource
from engine.kv_manager import KVManager
from engine.recompute import ChunkSpan
from engine.recompute import Run
from engine.request import Request
from engine.request_stats import COMPILED
from kvstore.keys import ChunkKey

POOL_TIER = "gpu"  # the tier name reported for chunks found resident in the engine's pool


@dataclass(slots=True, eq=False)
class CompileJob:
    """Prefill of one chunk alone, behind BOS, capturing every layer's NoPE K and V.

    Rows ``[0, num_skip)`` (the BOS) are computed but not captured.
    """

    key: ChunkKey
    token_ids: list[int]  # [BOS] + chunk ids
    num_skip: int
    pending: list[Run]
    block_ids: list[int] = field(default_factory=list)
    parts: list[torch.Tensor] = field(default_factory=list)  # [num_layers, 2, n, Hkv, D] pieces

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_chunk_tokens(self) -> int:
        return len(self.token_ids) - self.num_skip

    def token_at(self, pos: int) -> int:
        return self.token_ids[pos]


@dataclass(frozen=True, slots=True)
class LinkWrite:
    """One linked chunk to write into a request's pages before the step's forward."""

    block_ids: list[int]
    span: ChunkSpan
    kv: torch.Tensor  # [num_layers, 2, span.num_tokens, Hkv, D], NoPE, on the device


class ChunkLifecycle:
    """Compile jobs, chunk pins and the path of a chunk's KV from a tier (or a compile) to the
    pages of every request that links it."""

    def __init__(self, pool: ChunkPool, source: ChunkSource | None, kv: KVManager, bos_token_id: int | None,
                 device: torch.device, dtype: torch.dtype):
        self.pool = pool
        self.source = source
        self.kv = kv
        self.bos = [] if bos_token_id is None else [bos_token_id]
        self.device = device
        self.dtype = dtype
        self.jobs: dict[ChunkKey, CompileJob] = {}  # queued or running
        self.queue: deque[CompileJob] = deque()  # not started yet
        self.running: list[CompileJob] = []  # started: they hold KV blocks
        self._waiters: dict[ChunkKey, list[Request]] = {}

    # ---- lookup ---------------------------------------------------------------------------

    def resolve(self, request: Request) -> list[tuple[str | None, int]]:
        """Pin resident chunks, fetch stored ones, start or join compile jobs for the rest.

        Returns:
            (the tier each chunk was found in, or ``COMPILED``; its tokens), in prompt order.
        """
        finds = []
        chunks = [s.token_ids for s in request.segments if s.kind == "chunk"]
        for key, ids in zip(request.chunk_keys, chunks):
            tier = self._find(key)
            if tier is None:
                self._waiters.setdefault(key, []).append(request)
                if key not in self.jobs:
                    self._queue_job(key, ids)
                finds.append((COMPILED, len(ids)))
            else:
                request.pinned.append(key)
                finds.append((tier, len(ids)))
        request.chunks_resolved = True
        return finds

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

    def ready(self, request: Request) -> bool:
        """Every chunk of ``request`` is resident (none is still compiling)."""
        return all(key in self.pool and key not in self.jobs for key in request.chunk_keys)

    # ---- compile --------------------------------------------------------------------------

    def _queue_job(self, key: ChunkKey, ids: tuple[int, ...]) -> None:
        bos = [] if list(ids[:1]) == self.bos else self.bos  # a chunk that starts with BOS is compiled with it
        tokens = [*bos, *ids]
        job = CompileJob(key, tokens, len(bos), [(0, len(tokens))])
        self.jobs[key] = job
        self.queue.append(job)

    def compile_only(self, key: ChunkKey, ids: tuple[int, ...]) -> bool:
        """Queue a compile with no waiting request (warm-up); False if already held or queued."""
        if key in self.jobs or key in self.pool:
            return False
        self._queue_job(key, ids)
        return True

    def compiling(self, keys: Sequence[ChunkKey]) -> bool:
        return any(k in self.jobs for k in keys)

    def has_work(self) -> bool:
        return bool(self.queue or self.running)

    def start_next_job(self) -> CompileJob | None:
        """The next queued job, started with KV blocks of its own; None when the queue is empty
        or the blocks are not free (it stays first in the queue)."""
        if not self.queue:
            return None
        job = self.queue[0]
        blocks = self.kv.allocate_blocks(job.num_tokens)
        if blocks is None:
            return None
        self.queue.popleft()
        job.block_ids = blocks
        self.running.append(job)
        return job

    # ---- capture and store ----------------------------------------------------------------

    def absorb(self, captured: Sequence[tuple[CompileJob, torch.Tensor]]) -> None:
        """Take a step's captured KV pieces; every job with nothing left to compute finishes."""
        for job, kv in captured:
            job.parts.append(kv)
        for job in [j for j in self.running if not j.pending]:
            self._finish(job)

    def _finish(self, job: CompileJob) -> None:
        """Assemble the captured KV, make it resident, hand pins to waiters, store it."""
        kv = torch.cat(job.parts, dim=2)  # [num_layers, 2, num_chunk_tokens, Hkv, D]
        job.parts.clear()
        del self.jobs[job.key]
        self.running.remove(job)
        self.kv.free(job.block_ids)
        waiters = self._waiters.pop(job.key, [])
        self.pool.put(job.key, kv, pins=len(waiters))
        for request in waiters:
            request.pinned.append(job.key)
        if self.source is not None:
            self.source.put_chunk(job.key, kv if kv.device.type == "cpu" else kv.cpu())

    # ---- link -----------------------------------------------------------------------------

    def links(self, request: Request) -> list[LinkWrite]:
        """The writes that link ``request``'s planned chunks (then its pins are released: the
        writes hold the tensors until the model runner has copied them)."""
        writes = [LinkWrite(request.block_ids, span, self.pool.get(request.chunk_keys[span.index]))
                  for span in request.plan.linked]
        self.release(request)
        return writes

    def release(self, request: Request) -> None:
        """Drop a request's pins and its places in compile queues (after linking, on abort)."""
        for key in request.pinned:
            self.pool.unpin(key)
        request.pinned.clear()
        for key in request.chunk_keys:
            waiters = self._waiters.get(key)
            if waiters and request in waiters:
                waiters.remove(request)
