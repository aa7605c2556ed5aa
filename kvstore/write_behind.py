"""The background writer: chunks wait in a bounded, key-deduplicated queue for the persistent tier.

A full queue drops the new write instead of blocking the caller (a slow or dead S3 must not stall
the engine); the chunk still lives in the faster tiers, and the store counts the drop.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

import torch

from kvstore.keys import ChunkKey

logger = logging.getLogger(__name__)

WriteFn = Callable[[ChunkKey, torch.Tensor, bool], None]  # (key, kv, only_if_absent)


class WriteBehind:
    """One daemon thread draining pending writes in FIFO order."""

    def __init__(self, write: WriteFn, max_pending: int, name: str = "kvstore-writer") -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self._write = write
        self._max_pending = max_pending
        self._pending: OrderedDict[ChunkKey, tuple[torch.Tensor, bool]] = OrderedDict()
        self._inflight: ChunkKey | None = None
        self._closed = False
        self._cond = threading.Condition()
        self.dropped = 0  # writes refused because the queue was full or closed
        self.failed = 0  # writes whose function raised (a bug: tiers report failures as TierError)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending) + (self._inflight is not None)

    @property
    def queued(self) -> int:
        """Writes waiting for the thread: ``pending`` less the one in flight."""
        with self._cond:
            return len(self._pending)

    def submit(self, key: ChunkKey, kv: torch.Tensor, only_if_absent: bool = False) -> bool:
        """Queue a write; False (and counted) when the queue is full or closed.

        ``only_if_absent`` writes only if the tier lacks the key (spills of evicted chunks,
        which usually reached the persistent tier already when they were first put).
        """
        with self._cond:
            if key in self._pending:
                old_kv, old_only = self._pending[key]
                self._pending[key] = (old_kv, old_only and only_if_absent)
                return True
            if self._closed or len(self._pending) >= self._max_pending:
                self.dropped += 1
                return False
            self._pending[key] = (kv, only_if_absent)
            self._cond.notify_all()
            return True

    def cancel(self, key: ChunkKey) -> None:
        """Forget a pending write of ``key`` and wait out one in flight (before a delete)."""
        with self._cond:
            self._pending.pop(key, None)
            self._cond.wait_for(lambda: self._inflight != key)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued write is done; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and self._inflight is None, timeout_s)

    def close(self, timeout_s: float | None = None) -> None:
        """Finish the queued writes, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if not self._pending:
                    return
                key, (kv, only_if_absent) = self._pending.popitem(last=False)
                self._inflight = key
            try:
                self._write(key, kv, only_if_absent)
            except Exception:
                logger.exception("background write of chunk %s failed", key)
                self.failed += 1
            finally:
                with self._cond:
                    self._inflight = None
                    self._cond.notify_all()
