"""8 threads of mixed put/get on overlapping keys: no torn reads, no exceptions, budgets held."""

from __future__ import annotations

import random
import threading

import pytest
import torch

from kvstore.builder import build_store
from kvstore.config import StoreConfig

from tests.support.store import FP, key, make_kv, same_bits

NUM_THREADS = 8
OPS_PER_THREAD = {"memory+object_store+dir": 30, "dir_only": 60}  # Ray calls are the slow ones here
NUM_KEYS = 12


def _expected(i: int) -> torch.Tensor:
    return make_kv(i, torch.bfloat16, num_tokens=64 + 16 * (i % 4), num_kv_heads=2, head_dim=32)


@pytest.mark.parametrize("tiers", ["memory+object_store+dir", "dir_only"])
def test_mixed_threads(tiers, request, tmp_path):
    chunk_bytes = max(_expected(i).nbytes for i in range(NUM_KEYS))
    if tiers == "dir_only":  # every get reads a file that other threads are replacing
        config = StoreConfig(memory_bytes=0, object_store_bytes=0, persistent=str(tmp_path), write_queue_size=4)
    else:
        config = StoreConfig(
            memory_bytes=3 * chunk_bytes,
            object_store_bytes=5 * chunk_bytes,
            persistent=str(tmp_path),
            write_queue_size=4,
            **request.getfixturevalue("directory_actor"),
        )
    store = build_store(config, FP)
    expected = {key(i): _expected(i) for i in range(NUM_KEYS)}
    failures: list[str] = []
    max_memory = [0]
    start = threading.Barrier(NUM_THREADS)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        try:
            for _ in range(OPS_PER_THREAD[tiers]):
                k = key(rng.randrange(NUM_KEYS))
                if rng.random() < 0.4:
                    store.put_chunk(k, expected[k].clone())
                else:
                    hit = store.get_chunk(k)
                    if hit is not None and not same_bits(hit.kv, expected[k]):
                        failures.append(f"torn or wrong read of {k} from {hit.tier}")
                if store.memory is not None:
                    max_memory[0] = max(max_memory[0], store.memory.used_bytes)
                    if store.memory.used_bytes > store.memory.budget_bytes:
                        failures.append("memory budget exceeded")
        except Exception as err:  # the store must never raise; report what did
            failures.append(f"{type(err).__name__}: {err}")

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(NUM_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert store.flush(30)
    assert failures == []
    stats = store.stats()
    assert all(s["errors"] == 0 for s in stats["tiers"].values()), stats
    assert stats["writes"]["failed"] == 0
    if store.cluster is not None:
        used, budget = store.cluster.usage()
        assert used <= budget
        assert max_memory[0] <= store.memory.budget_bytes
        assert stats["tiers"]["memory"]["evictions"] > 0 and stats["tiers"]["object_store"]["evictions"] > 0
    # Whatever was written, every key the persistent tier holds reads back exactly.
    for k, kv in expected.items():
        if store.persistent.contains(k):
            assert same_bits(store.persistent.get(k), kv)
    store.close()
