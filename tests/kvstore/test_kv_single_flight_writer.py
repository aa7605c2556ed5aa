"""Single-flight (one fetch for concurrent misses) and the bounded background writer."""

from __future__ import annotations

import threading
import time

import pytest

from kvstore.single_flight import SingleFlight
from kvstore.write_behind import WriteBehind

from tests.support.store import key, make_kv


def _wait_until(cond, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def test_concurrent_calls_for_one_key_run_once():
    flight: SingleFlight[object] = SingleFlight()
    release = threading.Event()
    calls = []

    def fetch():
        calls.append(1)
        release.wait(10)
        return object()

    results = [None] * 8
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, flight.do("k", fetch))) for i in range(8)]
    for t in threads:
        t.start()
    _wait_until(lambda: flight.joins == 7)  # seven callers are waiting on the first one
    release.set()
    for t in threads:
        t.join(10)
    assert len(calls) == 1 and all(r is results[0] for r in results)
    assert flight.do("k", object) is not results[0]  # nothing is cached afterwards


def test_the_leaders_exception_reaches_every_waiter():
    flight: SingleFlight[int] = SingleFlight()
    release = threading.Event()
    errors = []

    def fail():
        release.wait(10)
        raise KeyError("boom")

    def call():
        try:
            flight.do("k", fail)
        except KeyError as err:
            errors.append(err)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    _wait_until(lambda: flight.joins == 2)
    release.set()
    for t in threads:
        t.join(10)
    assert len(errors) == 3
    assert flight.do("k", lambda: 5) == 5


def test_writer_drops_when_full_dedupes_and_flushes():
    release = threading.Event()
    written = []

    def write(k, kv, only_if_absent):
        release.wait(10)
        written.append((k, only_if_absent))

    writer = WriteBehind(write, max_pending=2)
    kv = make_kv(0)
    assert writer.submit(key(0), kv)
    _wait_until(lambda: writer.pending == 1 and writer.queued == 0)  # key 0 is in flight
    assert writer.submit(key(1), kv, only_if_absent=True)
    assert writer.submit(key(2), kv)
    assert writer.submit(key(1), kv)  # already queued: merged, a real write wins over a spill
    assert not writer.submit(key(3), kv)  # full: dropped, not blocked
    assert writer.dropped == 1 and writer.pending == 3
    assert not writer.flush(0.05)
    release.set()
    assert writer.flush(10)
    assert written == [(key(0), False), (key(1), False), (key(2), False)]
    writer.close(10)
    assert not writer.submit(key(4), kv) and writer.dropped == 2


def test_cancel_forgets_pending_and_waits_for_inflight():
    release = threading.Event()
    written = []

    def write(k, kv, only_if_absent):
        release.wait(10)
        written.append(k)

    writer = WriteBehind(write, max_pending=4)
    writer.submit(key(0), make_kv(0))
    writer.submit(key(1), make_kv(1))
    _wait_until(lambda: writer.pending == 2 and writer.queued == 1)
    writer.cancel(key(1))  # pending: forgotten at once
    done = threading.Event()
    canceller = threading.Thread(target=lambda: (writer.cancel(key(0)), done.set()))
    canceller.start()
    assert not done.wait(0.1)  # waits for the in-flight write of key 0
    release.set()
    assert done.wait(10)
    writer.close(10)
    assert written == [key(0)]


def test_a_raising_write_is_counted_and_the_writer_survives(caplog):
    def write(k, kv, only_if_absent):
        if k == key(0):
            raise RuntimeError("bug")

    writer = WriteBehind(write, max_pending=4)
    writer.submit(key(0), make_kv(0))
    writer.submit(key(1), make_kv(1))
    assert writer.flush(10)
    assert writer.failed == 1 and "bug" in caplog.text
    writer.close(10)
    with pytest.raises(ValueError):
        WriteBehind(write, max_pending=0)
