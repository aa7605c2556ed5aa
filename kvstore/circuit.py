"""A circuit breaker for one tier: while its backend is down, calls are skipped instead of each
one paying the backend's timeouts and retries; a single probe tests for recovery.

    closed ──(failure_threshold failures in a row)──> open
    open ──(cooldown elapsed)──> half-open: the next call is the probe
    half-open ──probe succeeds──> closed          ──probe fails──> open, cooldown doubled
                                                                   (up to max_cooldown_s)

Pure and thread-safe; the clock is injectable for tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(self, failure_threshold: int, cooldown_s: float, max_cooldown_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if not 0 < cooldown_s <= max_cooldown_s:
            raise ValueError(f"need 0 < cooldown_s <= max_cooldown_s, got {cooldown_s}, {max_cooldown_s}")
        self.failure_threshold = failure_threshold
        self.base_cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0  # in a row
        self._cooldown_s = cooldown_s
        self._opened_at: float | None = None  # None: closed
        self._probing = False

    @property
    def state(self) -> State:
        with self._lock:
            return self._state()

    def _state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._probing or self._clock() - self._opened_at >= self._cooldown_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """Whether to make the call: always when closed, never while open, and once (the probe)
        when half-open; every allowed call must end in :meth:`success` or :meth:`failure`."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "open" or self._probing:
                return False
            self._probing = True
            return True

    def success(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._probing = 0, None, False
            self._cooldown_s = self.base_cooldown_s

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._probing:  # the probe failed: stay open for longer
                self._cooldown_s = min(2 * self._cooldown_s, self.max_cooldown_s)
                self._opened_at, self._probing = self._clock(), False
            elif self._opened_at is None and self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
