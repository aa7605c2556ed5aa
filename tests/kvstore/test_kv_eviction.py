"""Eviction: exact LRU order by bytes; the object-store tier spills what it evicts to the
persistent tier, and a later get promotes it back."""

from __future__ import annotations

import pytest

from kvstore import codec
from kvstore.builder import build_store
from kvstore.config import StoreConfig
from kvstore.keys import chunk_object_name
from kvstore.lru import LruBytes, Victim
from kvstore.tensors import payload_view

from tests.support.store import FP, key, make_kv, same_bits


def test_lru_bytes_exact_order():
    lru = LruBytes(10)
    assert lru.admit("a", 3) == [] and lru.admit("b", 4) == [] and lru.admit("c", 3) == []
    assert lru.used_bytes == 10 and lru.keys() == ["a", "b", "c"]
    assert lru.touch("a") and lru.keys() == ["b", "c", "a"]
    assert lru.admit("d", 5) == [Victim("b", 4), Victim("c", 3)]  # the two least recent, in order
    assert lru.keys() == ["a", "d"] and lru.used_bytes == 8
    assert lru.admit("a", 3) == [] and lru.keys() == ["d", "a"]  # re-admit only touches
    assert lru.admit("huge", 11) is None and lru.keys() == ["d", "a"]
    assert lru.admit("e", 2) == [] and lru.used_bytes == 10
    assert lru.remove("d") == 5 and lru.remove("d") is None and lru.used_bytes == 5
    assert not lru.touch("zz") and "a" in lru and len(lru) == 2
    with pytest.raises(ValueError):
        LruBytes(-1)


def test_memory_tier_evicts_exact_lru_by_bytes():
    unit = make_kv(0, num_tokens=1).nbytes  # bytes of one token's KV
    store = build_store(StoreConfig(memory_bytes=4 * unit, object_store_bytes=0, persistent=""), FP)
    a, b, c, d, e = (make_kv(i, num_tokens=n) for i, n in enumerate([1, 2, 1, 2, 1]))
    for i, kv in enumerate([a, b, c]):
        store.put_chunk(key(i), kv)
    assert store.resident_keys("memory") == [key(0), key(1), key(2)]
    assert store.get_chunk(key(0)).tier == "memory"  # order now b, c, a
    store.put_chunk(key(3), d)  # needs 2 units: drops b (2)
    assert store.resident_keys("memory") == [key(2), key(0), key(3)]
    store.put_chunk(key(4), e)  # needs 1 unit: drops c
    assert store.resident_keys("memory") == [key(0), key(3), key(4)]
    stats = store.stats()["tiers"]["memory"]
    assert stats["evictions"] == 2 and stats["used_bytes"] == 4 * unit == stats["budget_bytes"]
    assert store.get_chunk(key(1)) is None and same_bits(store.get_chunk(key(3)).kv, d)
    # A chunk larger than the whole budget is not kept (and evicts nothing).
    store.put_chunk(key(5), make_kv(5, num_tokens=5))
    assert store.resident_keys("memory") == [key(0), key(4), key(3)]
    store.close()


def test_object_store_eviction_spills_and_promotes_back(directory_actor, tmp_path):
    root = tmp_path / "store"
    kvs = [make_kv(i, num_tokens=4) for i in range(3)]
    payload = payload_view(kvs[0])
    head = codec.encode_head(codec.make_header(key(0), FP, "float32", tuple(kvs[0].shape), payload))
    chunk_bytes = len(head) + payload.nbytes  # what the directory actor charges for one chunk

    config = StoreConfig(memory_bytes=0, object_store_bytes=2 * chunk_bytes, persistent=str(root), **directory_actor)
    store = build_store(config, FP)
    assert store.cluster.usage() == (0, 2 * chunk_bytes)
    # The persistent directory is unusable (a file stands where it should be) while 0 and 1
    # are put, so their background writes fail: only the object store holds them.
    root.write_text("not a directory")
    store.put_chunk(key(0), kvs[0])
    store.put_chunk(key(1), kvs[1])
    assert store.flush(10)
    assert store.stats()["tiers"]["dir"]["errors"] == 2
    root.unlink()

    store.put_chunk(key(2), kvs[2])  # evicts 0 (least recent), which is spilled
    assert store.flush(10)
    assert store.resident_keys("object_store") == [key(1), key(2)]
    assert (root / chunk_object_name(key(0))).is_file()
    assert not (root / chunk_object_name(key(1))).exists()
    assert store.cluster.usage()[0] <= 2 * chunk_bytes

    hit = store.get_chunk(key(0))  # served by the directory, promoted back (evicting 1)
    assert hit.tier == "dir" and same_bits(hit.kv, kvs[0])
    assert store.contains(key(0)) == "object_store"
    assert store.flush(10)
    assert (root / chunk_object_name(key(1))).is_file()  # 1 was spilled in turn
    hit = store.get_chunk(key(0))
    assert hit.tier == "object_store" and same_bits(hit.kv, kvs[0])
    assert store.stats()["tiers"]["object_store"]["evictions"] == 2
    store.close()
