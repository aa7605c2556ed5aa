"""generation.until_deadline on its own: items pass until the deadline, then a 504; a replica
dying under the stream is a 502; the inner stream is closed either way."""

from __future__ import annotations

import asyncio
import time

import pytest
from ray.exceptions import ActorDiedError

from deployments.http.errors import APIError
from deployments.http.generation import until_deadline


class Source:
    def __init__(self, fail: BaseException | None = None):
        self.fail = fail
        self.closed = False

    async def items(self):
        try:
            for i in range(3):
                yield i
            if self.fail is not None:
                raise self.fail
            await asyncio.sleep(60)
            yield 3
        finally:
            self.closed = True


async def drain(source: Source, timeout_s: float) -> tuple[list[int], APIError]:
    got = []
    with pytest.raises(APIError) as error:
        async for item in until_deadline(source.items(), time.perf_counter() + timeout_s, timeout_s):
            got.append(item)
    return got, error.value


def test_past_the_deadline_is_a_504_and_the_stream_is_closed():
    source = Source()
    start = time.perf_counter()
    got, error = asyncio.run(drain(source, 0.2))
    assert time.perf_counter() - start < 5
    assert (got, error.status, error.code, source.closed) == ([0, 1, 2], 504, "timeout", True)


def test_a_dead_replica_is_a_502():
    source = Source(ActorDiedError())
    got, error = asyncio.run(drain(source, 30))
    assert (got, error.status, error.code, source.closed) == ([0, 1, 2], 502, "replica_failed", True)
    assert error.body()["error"]["type"] == "server_error"
