"""asyncio front of the engine: the step loop runs in one background thread.

Callers never wait on a step: requests and aborts go through a thread-safe inbox that the engine
thread drains between steps, and outputs come back to each caller's event loop through
``call_soon_threadsafe``. Validation and tokenization happen in the caller's thread, so a bad
request raises ``ValueError`` at once without touching the engine.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from engine.engine import Engine, Prompt
from engine.load import EngineLoad
from engine.outputs import RequestOutput
from engine.request import Request
from engine.sampling_params import SamplingParams
from engine.segments import LinkPolicy
from kvstore.keys import ChunkKey

logger = logging.getLogger(__name__)


class EngineError(RuntimeError):
    """The engine failed while running a request (the request is aborted; the engine goes on)."""


@dataclass(slots=True)
class _Stream:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue


class AsyncEngine:
    """Owns an :class:`Engine` and the thread that drives it."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._inbox: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._streams: dict[str, _Stream] = {}
        self._compiles: list[tuple[list[ChunkKey], asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._stopped = False
        self._load = engine.load()
        self._thread = threading.Thread(target=self._run, name="epic-engine", daemon=True)
        self._thread.start()

    # ---- caller side ------------------------------------------------------------------------

    async def add_request(self, prompt: Prompt, sampling: SamplingParams | None = None,
                          link_policy: LinkPolicy | None = None, request_id: str | None = None,
                          cache_salt: str | None = None) -> AsyncIterator[RequestOutput]:
        """Submit a request and yield its outputs as tokens arrive, those of its ``n``
        sequences interleaved (told apart by ``index``; each sequence's last has ``finished``).

        Raises ``ValueError`` for a bad request before anything is queued. Leaving the loop early
        (or the consumer being cancelled) aborts the request and frees its KV blocks.
        """
        req = self.engine.make_request(prompt, sampling, link_policy, request_id, cache_salt)
        return self._stream(req)

    async def _stream(self, req: Request) -> AsyncIterator[RequestOutput]:
        stream = _Stream(asyncio.get_running_loop(), asyncio.Queue())
        self._streams[req.request_id] = stream
        self._post(lambda: self._submit(req))
        remaining = req.sampling.n
        finished = False
        try:
            while not finished:
                item = await stream.queue.get()
                if isinstance(item, BaseException):
                    raise item
                remaining -= item.finished
                finished = remaining == 0
                yield item
        finally:
            self._streams.pop(req.request_id, None)
            if not finished:
                self.abort(req.request_id)

    def abort(self, request_id: str) -> None:
        self._post(lambda: self.engine.abort(request_id))

    async def compile_chunks(self, token_id_lists: list[list[int]], scope: str | None = None) -> list[ChunkKey]:
        """Compile chunks inside the engine's normal steps (alongside running requests) and
        return their keys once every one is resident and handed to the chunk source."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def start() -> None:
            try:
                keys = self.engine.start_compiles(token_id_lists, scope)
            except ValueError as exc:
                loop.call_soon_threadsafe(done.set_exception, exc)
            else:
                self._compiles.append((keys, loop, done))

        self._post(start)
        return await done

    def load(self) -> EngineLoad:
        """The load as of the last step (read without waiting for the engine thread)."""
        return self._load

    def check_health(self) -> None:
        """Raises:
            EngineError: the step loop's thread is no longer running.
        """
        if not self._thread.is_alive():
            raise EngineError("the engine's step loop has stopped")

    def shutdown(self) -> None:
        self._stopped = True
        self._wake.set()
        self.wait_stopped(10)

    def wait_stopped(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the step loop to end (shut down, or died); True if it has."""
        self._thread.join(timeout=timeout_s)
        return not self._thread.is_alive()

    def _post(self, fn: Callable[[], None]) -> None:
        self._inbox.put(fn)
        self._wake.set()

    # ---- engine thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped:
            self._drain_inbox()
            self._finish_compiles()
            if not self.engine.has_unfinished():
                self._load = self.engine.load()
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                outputs = self.engine.step()
            except Exception as exc:
                logger.exception("engine step failed; aborting the running requests")
                self._fail_all(exc)
                continue
            self._load = self.engine.load()
            for out in outputs:
                self._deliver(out.request_id, out)

    def _finish_compiles(self) -> None:
        waiting = []
        for keys, loop, done in self._compiles:
            if self.engine.compiling(keys):
                waiting.append((keys, loop, done))
            else:
                loop.call_soon_threadsafe(done.set_result, keys)
        self._compiles = waiting

    def _drain_inbox(self) -> None:
        while True:
            try:
                fn = self._inbox.get_nowait()
            except queue.Empty:
                return
            try:
                fn()
            except Exception as exc:
                logger.exception("engine call failed; aborting the running requests")
                self._fail_all(exc)

    def _submit(self, req: Request) -> None:
        try:
            self.engine.submit(req)
        except ValueError as exc:  # e.g. a request id already in use: that caller's error only
            self._deliver(req.request_id, exc)

    def _deliver(self, request_id: str, item: RequestOutput | BaseException) -> None:
        stream = self._streams.get(request_id)
        if stream is not None:
            stream.loop.call_soon_threadsafe(stream.queue.put_nowait, item)

    def _fail_all(self, exc: Exception) -> None:
        for _, loop, done in self._compiles:
            loop.call_soon_threadsafe(done.set_exception, EngineError(f"engine failure: {exc}"))
        self._compiles = []
        for request_id in self.engine.request_ids():
            self.engine.abort(request_id)
            self._deliver(request_id, EngineError(f"engine failure: {exc}"))
