"""Where a warm-up engine puts the chunks it compiles: straight into the persistent tier.

The serving replicas' :class:`~kvstore.tiered.TieredStore` writes behind and drops a write when
its queue is full (a slow S3 must not stall requests). A warm-up wants the opposite: every
chunk it compiled must land, and the engine may wait for that. So the warm-up engine's chunk
source is this sink:

    engine step ── put_chunk ──> [ at most max_pending chunks ] ──> write threads ──> tier.put
                     (blocks while full)                                   │
    drain() <── written keys + bytes, failed keys + reasons <─────────────┘

``get_chunk`` always misses: the warm-up asks the tier which chunks it holds before compiling
and hands the engine only the missing ones.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import torch

from kvstore.errors import TierError
from kvstore.keys import ChunkKey
from kvstore.tier import ChunkHit, Tier


@dataclass
class SinkReport:
    """What reached the tier since the last :meth:`PersistentSink.drain`."""

    written: dict[ChunkKey, int] = field(default_factory=dict)  # key -> payload bytes
    failed: dict[ChunkKey, str] = field(default_factory=dict)  # key -> reason


class PersistentSink:
    """A ChunkSource that writes every chunk to ``tier`` on ``num_threads`` threads.

    Args:
        tier: the persistent tier (S3 or a directory).
        num_threads: writes in flight at once.
        max_pending: chunks held in memory waiting for a thread (bounds host memory).
    """

    def __init__(self, tier: Tier, num_threads: int, max_pending: int) -> None:
        if num_threads < 1 or max_pending < num_threads:
            raise ValueError(f"need num_threads >= 1 and max_pending >= num_threads, got {num_threads}, {max_pending}")
        self.tier = tier
        self._pool = ThreadPoolExecutor(max_workers=num_threads, thread_name_prefix="warmup-writer")
        self._slots = threading.BoundedSemaphore(max_pending)
        self._lock = threading.Lock()
        self._futures: list[Future] = []
        self._report = SinkReport()

    def get_chunk(self, key: ChunkKey) -> ChunkHit | None:
        return None

    def put_chunk(self, key: ChunkKey, kv: torch.Tensor) -> None:
        """Queue ``kv`` ``[num_layers, 2, num_tokens, num_kv_heads, head_dim]`` (host) for the tier."""
        self._slots.acquire()
        future = self._pool.submit(self._write, key, kv)
        with self._lock:
            self._futures.append(future)

    def _write(self, key: ChunkKey, kv: torch.Tensor) -> None:
        try:
            self.tier.put(key, kv)
        except TierError as e:
            with self._lock:
                self._report.failed[key] = f"store write failed: {e}"
        else:
            with self._lock:
                self._report.written[key] = kv.numel() * kv.element_size()
        finally:
            self._slots.release()

    def drain(self) -> SinkReport:
        """Wait for every queued write and return what happened to them."""
        with self._lock:
            futures, self._futures = self._futures, []
        for f in wait(futures).done:
            f.result()  # a non-TierError is a bug: let it surface
        with self._lock:
            report, self._report = self._report, SinkReport()
        return report

    def close(self) -> None:
        self._pool.shutdown(wait=True)
