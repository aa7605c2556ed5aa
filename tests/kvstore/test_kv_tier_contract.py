"""One contract, every tier: memory, Ray object store (real local Ray), S3 (real moto server),
local directory. Bit-exact round trips, contains/delete, batched calls."""

from __future__ import annotations

import pytest
import torch

from kvstore.config import StoreConfig
from kvstore.directory import DirBlobs
from kvstore.memory import MemoryTier
from kvstore.persistent import BlobTier
from kvstore.s3 import S3Blobs, make_s3_client

from tests.support.store import FP, key, make_kv, same_bits, s3_config

TIER_NAMES = ["memory", "object_store", "object_store_sharded", "s3", "dir"]


@pytest.fixture(params=TIER_NAMES)
def tier(request, tmp_path):
    name = request.param
    if name == "memory":
        yield MemoryTier(64 * 1024 * 1024)
    elif name == "object_store":
        from kvstore.object_store import ObjectStoreTier

        actor = request.getfixturevalue("directory_actor")
        yield ObjectStoreTier(StoreConfig(object_store_bytes=64 * 1024 * 1024, **actor), FP)
    elif name == "object_store_sharded":
        from kvstore.object_store import ObjectStoreTier

        actor = request.getfixturevalue("directory_actor")
        tier = ObjectStoreTier(StoreConfig(object_store_bytes=64 * 1024 * 1024, directory_shards=3, **actor), FP)
        yield tier
        tier.destroy_directory()
    elif name == "s3":
        config = s3_config(request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket"))
        loc = config.location
        yield BlobTier("s3", S3Blobs(make_s3_client(config), loc.bucket, loc.prefix, config), FP)
    else:
        yield BlobTier("dir", DirBlobs(tmp_path / "store"), FP)


def test_contract(tier):
    assert tier.name in {n.removesuffix("_sharded") for n in TIER_NAMES}
    # Absent keys: a miss, not an error.
    assert tier.get(key(0)) is None
    assert not tier.contains(key(0))
    tier.delete(key(0))

    # Bit-exact round trip of every dtype and an odd shape.
    kvs = {
        key(1): make_kv(1, torch.float32),
        key(2): make_kv(2, torch.bfloat16, num_tokens=13, num_kv_heads=3, head_dim=6),
        key(3): make_kv(3, torch.float16, num_tokens=1, num_layers=3),
    }
    for k, kv in kvs.items():
        result = tier.put(k, kv)
        assert result.stored and result.evicted == []
    for k, kv in kvs.items():
        assert tier.contains(k)
        assert same_bits(tier.get(k), kv)

    # Putting a present key again keeps the content.
    assert tier.put(key(1), kvs[key(1)].clone()).stored
    assert same_bits(tier.get(key(1)), kvs[key(1)])

    # Delete.
    tier.delete(key(2))
    assert not tier.contains(key(2)) and tier.get(key(2)) is None
    assert same_bits(tier.get(key(3)), kvs[key(3)])



@pytest.mark.parametrize("tier", ["object_store", "object_store_sharded"], indirect=True)
def test_object_store_batched_forms(tier):
    """One directory call for many keys (the single-key forms are these with one key), with an
    absent key among present ones."""
    batch = [(key(10 + i), make_kv(10 + i, torch.bfloat16, num_tokens=2 + i)) for i in range(4)]
    assert all(r.stored for r in tier.put_many(batch))
    keys = [key(10), key(99), key(11), key(12), key(13)]
    got = tier.get_many(keys)
    assert got[1] is None
    for out, (_, kv) in zip([got[0], *got[2:]], batch):
        assert same_bits(out, kv)
    assert tier.contains_many(keys) == [True, False, True, True, True]
    tier.delete_many([key(10), key(12), key(99)])
    assert tier.contains_many(keys) == [False, False, True, False, True]
