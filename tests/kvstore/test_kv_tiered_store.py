"""The tiered store's surface: read-through promotion, contains, delete, resident keys, stats,
the engine's ChunkSource protocol, and the builder's choices."""

from __future__ import annotations

import pytest
import torch

from engine.chunk_source import ChunkSource
from kvstore.builder import build_store
from kvstore.config import StoreConfig
from kvstore.keys import chunk_key, chunk_object_name, key_from_object_name

from tests.support.store import FP, key, make_kv, same_bits


def test_read_through_promotion_contains_and_delete(tmp_path):
    store = build_store(StoreConfig(memory_bytes=1 << 20, object_store_bytes=0, persistent=str(tmp_path)), FP)
    assert isinstance(store, ChunkSource)
    kv = make_kv(1, torch.bfloat16)
    store.put_chunk(key(1), kv)
    assert store.contains(key(1)) == "memory"
    assert store.flush(10)
    store.memory.delete(key(1))
    assert store.contains(key(1)) == "dir"
    hit = store.get_chunk(key(1))
    assert hit.tier == "dir" and same_bits(hit.kv, kv)
    assert store.contains(key(1)) == "memory"  # promoted
    assert store.get_chunk(key(1)).tier == "memory"
    assert store.resident_keys("memory") == [key(1)]
    with pytest.raises(ValueError, match="valid: memory"):
        store.resident_keys("dir")

    store.delete(key(1))
    assert store.contains(key(1)) is None and store.get_chunk(key(1)) is None
    assert not (tmp_path / chunk_object_name(key(1))).exists()

    tiers = store.stats()["tiers"]
    assert set(tiers) == {"memory", "dir"}
    assert tiers["dir"]["hits"] == 1 and tiers["dir"]["bytes_out"] == kv.nbytes == tiers["dir"]["bytes_in"]
    assert tiers["dir"]["misses"] == 1 and tiers["memory"]["hits"] == 1
    assert tiers["dir"]["get_count"] == 2 and tiers["dir"]["get_seconds"] > 0
    store.close()


def test_delete_cancels_a_pending_background_write(tmp_path):
    store = build_store(StoreConfig(memory_bytes=0, object_store_bytes=0, persistent=str(tmp_path)), FP)
    for i in range(20):
        store.put_chunk(key(i), make_kv(i, num_tokens=200))
    store.delete(key(19))
    assert store.flush(10)
    assert store.contains(key(19)) is None and store.contains(key(0)) == "dir"
    store.close()


def test_put_copies_views_and_rejects_bad_tensors(tmp_path):
    store = build_store(StoreConfig(object_store_bytes=0, persistent=""), FP)
    big = make_kv(2, num_tokens=10)
    view = big[:, :, 2:5]  # non-contiguous
    store.put_chunk(key(2), view)
    held = store.get_chunk(key(2)).kv
    assert same_bits(held, view.contiguous()) and held.untyped_storage().nbytes() == held.nbytes
    with pytest.raises(ValueError, match="dtype"):
        store.put_chunk(key(3), torch.zeros(1, 2, 1, 1, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        store.put_chunk(key(3), torch.zeros(1, 2, 1, 1))
    assert store.stats()["writes"] == {}  # no persistent tier, no writer
    store.close()


def test_object_names_round_trip():
    k = chunk_key(FP, [1, 2, 3])
    assert chunk_object_name(k) == f"chunks/{k[:2]}/{k}.kv"
    assert key_from_object_name(chunk_object_name(k)) == k
    for bad in ("chunks/xx/" + k + ".kv", f"chunks/{k[:2]}/{k}", f"docs/{k[:2]}/{k}.kv", "chunks/ab/zz.kv"):
        assert key_from_object_name(bad) is None
    with pytest.raises(ValueError):
        chunk_object_name("../etc")


def test_default_persistent_directory_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = build_store(StoreConfig(object_store_bytes=0), FP)
    assert [t.name for t in store.tiers] == ["memory", "dir"]
    store.put_chunk(key(1), make_kv(1))
    store.close()
    assert (tmp_path / ".epic-store" / chunk_object_name(key(1))).is_file()
