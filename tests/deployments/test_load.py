"""Overload and disconnects against the real Serve app: 4x the queue capacity of concurrent
streaming requests, a seeded quarter of them leaving mid-stream (benchmarks/bench_load.py is the
load generator; this is its bounded run)."""

from __future__ import annotations

import asyncio
import time

import pytest
from tests.support.serving import SERVED_MODEL, app_config_dict, replica_actors, replica_load, replica_rss_bytes

from benchmarks.bench_load import burst, check, expected_texts, summary

APP = "epic-load"
PREFIX = "/epic-load"
REPLICAS, MAX_ONGOING, MAX_QUEUED = 2, 2, 4
CAPACITY = MAX_ONGOING * REPLICAS + MAX_QUEUED
NUM_REQUESTS = 4 * CAPACITY
MAX_TOKENS = 16
# The replica's resident memory may grow by at most this much under the burst (the model, KV
# pool and chunk pool are allocated before it; what grows is Python objects and allocator slack).
MAX_RSS_GROWTH_BYTES = 128 * 2**20


@pytest.fixture(scope="module")
def load_url(serve_url, tiny_model_dir, tmp_path_factory):
    from ray import serve

    from deployments.app import build
    from deployments.config import AppConfig

    config = AppConfig.from_dict(app_config_dict(
        tiny_model_dir, tmp_path_factory.mktemp("load-store"), num_replicas=REPLICAS,
        max_ongoing_requests=MAX_ONGOING, max_queued_requests=MAX_QUEUED))
    serve.run(build(config), name=APP, route_prefix=PREFIX)
    yield serve_url + PREFIX
    serve.delete(APP)


def wait_idle(actors: dict, timeout_s: float = 30.0) -> dict:
    """Each replica's load once every KV block is free and no chunk is pinned (or the last seen)."""
    deadline = time.monotonic() + timeout_s
    while True:
        loads = {r: replica_load(a) for r, a in actors.items()}
        idle = all(lo["free_blocks"] == lo["total_blocks"] and lo["pinned_chunks"] == 0 for lo in loads.values())
        if idle or time.monotonic() > deadline:
            return loads
        time.sleep(0.2)


def test_overload_and_disconnects_lose_and_leak_nothing(load_url):
    expected = expected_texts(load_url, MAX_TOKENS, SERVED_MODEL)
    before = replica_actors(APP)
    assert len(before) == REPLICAS
    rss_before = {r: replica_rss_bytes(a) for r, a in before.items()}

    outcomes = asyncio.run(burst(load_url, NUM_REQUESTS, MAX_TOKENS, SERVED_MODEL, disconnect=0.25, seed=0))

    assert check(outcomes, expected, MAX_TOKENS) == []
    counts = summary(outcomes)
    assert counts["200"] + counts["503"] + counts["disconnected"] == NUM_REQUESTS
    assert counts["200"] >= 1 and counts["503"] >= 1 and counts["disconnected"] >= 1, counts
    assert counts["ttft_p99_s"] is not None
    after = replica_actors(APP)
    assert sorted(after) == sorted(before)  # no replica died or was replaced
    for replica_id, load in wait_idle(after).items():
        assert (load["free_blocks"], load["pinned_chunks"], load["queue_len"]) == (load["total_blocks"], 0, 0), replica_id
        assert replica_rss_bytes(after[replica_id]) - rss_before[replica_id] < MAX_RSS_GROWTH_BYTES
