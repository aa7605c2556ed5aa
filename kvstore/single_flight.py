"""Single-flight: concurrent calls for one key share one execution."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """The first caller for a key runs ``fn``; callers arriving while it runs wait and get the
    same result (or exception). Nothing is cached once the call has returned."""

    def __init__(self) -> None:
        self._calls: dict[Hashable, Future[T]] = {}
        self._lock = threading.Lock()
        self.joins = 0  # callers that waited on another caller's execution

    def do(self, key: Hashable, fn: Callable[[], T]) -> T:
        with self._lock:
            future = self._calls.get(key)
            leader = future is None
            if leader:
                future = self._calls[key] = Future()
            else:
                self.joins += 1
        if not leader:
            return future.result()
        try:
            result = fn()
        except BaseException as err:
            future.set_exception(err)
            raise
        else:
            future.set_result(result)
            return result
        finally:
            with self._lock:
                del self._calls[key]
