"""The object-store directory sharded by key: every shard owns its share of keys and budget,
and two clients agree on which shard holds a key."""

from __future__ import annotations

import time

import pytest

from kvstore.config import StoreConfig
from kvstore.object_store import ObjectStoreTier, directory_names

from tests.support.store import FP, key, make_kv, same_bits


@pytest.fixture
def sharded(directory_actor):
    config = StoreConfig(object_store_bytes=3 * 1024 * 1024, directory_shards=3, **directory_actor)
    writer, reader = ObjectStoreTier(config, FP), ObjectStoreTier(config, FP)
    yield config, writer, reader
    writer.destroy_directory()


def test_keys_spread_over_named_shards_and_another_client_finds_them(sharded, ray_session):
    config, writer, reader = sharded
    names = directory_names(config)
    assert names == [f"{config.directory_actor_name}-{i}" for i in range(3)]
    kvs = {key(i): make_kv(i, num_tokens=4) for i in range(24)}
    assert all(r.stored for r in writer.put_many(list(kvs.items())))
    per_shard = [
        ray_session.get(ray_session.get_actor(n, namespace=config.directory_actor_namespace).keys.remote())
        for n in names
    ]
    assert sorted(k for keys in per_shard for k in keys) == sorted(kvs)
    assert all(len(keys) >= 3 for keys in per_shard), [len(k) for k in per_shard]  # 24 keys over 3 shards
    assert sorted(reader.keys()) == sorted(kvs)
    for k, out in zip(kvs, reader.get_many(list(kvs))):
        assert same_bits(out, kvs[k])
    used, budget = reader.usage()
    payload = sum(kv.nbytes for kv in kvs.values())
    assert budget == 3 * (config.object_store_bytes // 3) and payload < used < payload + 24 * 1024  # + headers


def test_each_shard_evicts_within_its_share_of_the_budget(directory_actor, ray_session):
    kv = make_kv(0, num_tokens=64)  # 2 * 2 * 64 * 2 * 8 * 4 = 8 KiB of payload
    config = StoreConfig(object_store_bytes=2 * 6 * kv.nbytes, directory_shards=2, **directory_actor)
    tier = ObjectStoreTier(config, FP)
    try:
        results = tier.put_many([(key(i), make_kv(i, num_tokens=64)) for i in range(40)])
        assert all(r.stored for r in results)
        assert sum(len(r.evicted) for r in results) > 0
        for name in directory_names(config):
            actor = ray_session.get_actor(name, namespace=config.directory_actor_namespace)
            used, budget = ray_session.get(actor.usage.remote())
            assert budget == config.object_store_bytes // 2 and 0 < used <= budget
    finally:
        tier.destroy_directory()


def wait_dead(ray, actor, timeout_s: float = 30.0) -> None:
    """Until ``actor`` is dead (ray.kill returns before the actor stops taking calls)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get(actor.__ray_ready__.remote(), timeout=timeout_s)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.05)
    raise AssertionError("the killed actor still answers")


@pytest.mark.parametrize("shards", [1, 2])
def test_a_killed_directory_is_re_created_by_the_next_call(shards, directory_actor, ray_session):
    config = StoreConfig(object_store_bytes=1 << 20, directory_shards=shards, object_store_ref_cache_bytes=0,
                         **directory_actor)
    tier = ObjectStoreTier(config, FP)
    try:
        kvs = {key(i): make_kv(i) for i in range(4)}
        tier.put_many(list(kvs.items()))
        for name in directory_names(config):  # killed for good: Ray does not restart it
            actor = ray_session.get_actor(name, namespace=config.directory_actor_namespace)
            ray_session.kill(actor)
            wait_dead(ray_session, actor)
        # The call that meets a dead directory re-creates it (empty) and asks again: a miss.
        assert tier.get_many(list(kvs)) == [None] * 4
        assert tier.usage() == (0, shards * (config.object_store_bytes // shards))
        assert tier.put(key(9), make_kv(9)).stored and same_bits(tier.get(key(9)), make_kv(9))
    finally:
        tier.destroy_directory()
