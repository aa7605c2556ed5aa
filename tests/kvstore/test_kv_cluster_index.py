"""The object-store tier's bookkeeping: the directory's index and log of dropped keys, the
clients' ref caches, and both against a real directory actor shared by two clients."""

from __future__ import annotations

from kvstore import codec
from kvstore.cluster_index import ClusterIndex, Entry, RefCache
from kvstore.config import StoreConfig
from kvstore.tensors import payload_view

from tests.support.store import FP, key, make_kv, same_bits


def test_index_logs_every_drop_and_catches_clients_up():
    index = ClusterIndex(budget_bytes=10, log_size=2)
    assert index.admit("a", 4, "ra") == [] and index.admit("b", 4, "rb") == []
    assert index.lookup("a") == Entry(4, "ra")  # now b, a
    assert index.admit("c", 4, "rc") == [("b", Entry(4, "rb"))]
    assert index.admit("c", 4, "other") == [] and index.lookup("c") == Entry(4, "rc")
    assert index.admit("big", 11, "x") is None
    assert index.remove("a") and not index.remove("a")
    assert index.seq == 2 and index.changes_since(0) == (2, ["b", "a"])
    assert index.changes_since(1) == (2, ["a"]) and index.changes_since(2) == (2, [])
    assert index.changes_since(3) == (2, None)  # a client ahead of us: we restarted
    for k in "defgh":
        index.admit(k, 4, k)
    assert index.seq == 6 and index.changes_since(0) == (6, None)  # log trimmed past 0
    assert index.changes_since(5) == (6, ["f"])
    assert index.used_bytes == 8 and index.keys() == ["g", "h"]


def test_ref_cache_applies_replies_in_order():
    cache: RefCache[str] = RefCache(budget_bytes=8)
    cache.apply(3, [])
    cache.put("a", 4, "ra", seq=3)
    cache.put("b", 4, "rb", seq=3)
    assert cache.get("a") == "ra" and cache.get("zz") is None
    assert cache.drain_touches() == ["a"] and cache.pending_touches == 0
    cache.put("c", 4, "rc", seq=3)  # evicts b, the least recently used
    assert cache.get("b") is None and len(cache) == 2
    cache.apply(5, ["a"])
    assert cache.get("a") is None and cache.since == 5
    cache.put("a", 4, "stale", seq=4)  # a reply older than the drop we applied: not cached
    assert cache.get("a") is None
    cache.apply(4, ["c"])  # an old reply: ignored
    assert cache.get("c") == "rc" and cache.since == 5
    cache.apply(1, None)  # the directory restarted
    assert len(cache) == 0 and cache.since == 1
    cache.put("huge", 9, "x", seq=1)
    assert len(cache) == 0 and len(RefCache(0)) == 0


def _tier(actor, budget_bytes: int):
    from kvstore.object_store import ObjectStoreTier

    return ObjectStoreTier(StoreConfig(object_store_bytes=budget_bytes, **actor), FP)


def _chunk_bytes(kv) -> int:
    """What the directory charges for one chunk: framed header plus payload."""
    payload = payload_view(kv)
    return len(codec.encode_head(codec.make_header(key(0), FP, "float32", tuple(kv.shape), payload))) + payload.nbytes


def test_a_client_serves_cached_refs_until_it_hears_of_a_drop(directory_actor):
    a, b = _tier(directory_actor, 1 << 20), _tier(directory_actor, 1 << 20)
    kv = make_kv(1)
    a.put(key(1), kv)
    assert same_bits(b.get(key(1)), kv)  # looked up and cached by b
    a.delete(key(1))
    assert a.get(key(1)) is None
    assert same_bits(b.get(key(1)), kv)  # b has not talked to the directory since: still served
    assert b.get(key(2)) is None  # any directory call brings b up to date ...
    assert b.get(key(1)) is None  # ... and the dropped key is gone
    assert a.keys() == [] and b.usage()[0] == 0


def test_cache_hits_reach_the_directory_lru(directory_actor):
    kvs = [make_kv(i) for i in range(4)]
    tier = _tier(directory_actor, 3 * _chunk_bytes(kvs[0]))
    for i in range(3):
        tier.put(key(i), kvs[i])  # directory order: 0, 1, 2
    for i in range(3):
        tier.get(key(i))  # lookups: order stays 0, 1, 2
    assert tier.keys() == [key(0), key(1), key(2)]
    assert same_bits(tier.get(key(0)), kvs[0])  # a cache hit: the touch waits for the next call
    assert tier.keys() == [key(0), key(1), key(2)]
    result = tier.put(key(3), kvs[3])  # carries the touch of 0, so 1 is the one evicted
    assert [e.key for e in result.evicted] == [key(1)] and same_bits(result.evicted[0].kv, kvs[1])
    assert tier.keys() == [key(2), key(0), key(3)]
