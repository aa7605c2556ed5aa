"""The circuit breaker's states on a fake clock: open after the threshold, one probe per
cooldown, the cooldown doubling while probes fail, closed on the first success."""

from __future__ import annotations

import pytest

from kvstore.circuit import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_probes_once_per_cooldown():
    clock = Clock()
    cb = CircuitBreaker(3, 1.0, 4.0, clock)
    for _ in range(2):
        assert cb.allow()
        cb.failure()
    assert cb.state == "closed"
    assert cb.allow()
    cb.failure()
    assert cb.state == "open" and not cb.allow()
    clock.now += 0.99
    assert not cb.allow()
    clock.now += 0.01
    assert cb.state == "half_open"
    assert cb.allow() and not cb.allow()  # one probe at a time
    cb.failure()  # probe failed: open for 2 s now
    assert cb.state == "open"
    clock.now += 1.5
    assert not cb.allow()
    clock.now += 0.5
    assert cb.allow()
    cb.failure()  # 4 s (the cap)
    clock.now += 4.0
    assert cb.allow()
    cb.failure()
    clock.now += 3.99
    assert not cb.allow()
    clock.now += 0.01
    assert cb.allow()
    cb.success()
    assert cb.state == "closed" and cb.allow() and cb.allow()
    cb.failure()  # after recovery the count and the cooldown start over
    cb.failure()
    assert cb.state == "closed"
    cb.failure()
    clock.now += 1.0
    assert cb.state == "half_open"


def test_a_success_resets_the_failure_count():
    cb = CircuitBreaker(2, 1.0, 1.0, Clock())
    cb.failure()
    cb.success()
    cb.failure()
    assert cb.state == "closed"


@pytest.mark.parametrize("args", [(0, 1.0, 1.0), (1, 0.0, 1.0), (1, 2.0, 1.0)])
def test_bad_settings(args):
    with pytest.raises(ValueError):
        CircuitBreaker(*args)
