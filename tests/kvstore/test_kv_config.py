"""StoreConfig: defaults, validation with clear errors, persistent URIs, from_dict."""

from __future__ import annotations

import dataclasses

import pytest

from kvstore.config import PersistentLocation, StoreConfig, parse_persistent


def test_defaults_are_valid_and_frozen():
    config = StoreConfig()
    assert config.memory_bytes > 0 and config.object_store_bytes > 0
    assert config.location == PersistentLocation("dir", path=".epic-store")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.memory_bytes = 1


@pytest.mark.parametrize(
    "uri,expected",
    [
        ("", PersistentLocation("none")),
        ("dir:///var/lib/epic", PersistentLocation("dir", path="/var/lib/epic")),
        ("dir://data/kv", PersistentLocation("dir", path="data/kv")),
        ("/plain/abs", PersistentLocation("dir", path="/plain/abs")),
        ("rel/dir", PersistentLocation("dir", path="rel/dir")),
        ("s3://my-bucket", PersistentLocation("s3", bucket="my-bucket", prefix="")),
        ("s3://my-bucket/a/b/", PersistentLocation("s3", bucket="my-bucket", prefix="a/b")),
    ],
)
def test_persistent_uris(uri, expected):
    assert parse_persistent(uri) == expected


@pytest.mark.parametrize(
    "uri,match", [("gs://b/p", "unknown scheme"), ("dir://", "no directory"), ("s3://B_ad/x", "bucket")]
)
def test_bad_persistent_uris(uri, match):
    with pytest.raises(ValueError, match=match):
        StoreConfig(persistent=uri)


def test_from_dict_names_an_unknown_key():
    config = StoreConfig.from_dict(
        {"memory_bytes": 1024, "persistent": "s3://bkt/x", "s3_endpoint_url": "http://127.0.0.1:9"}
    )
    assert config.memory_bytes == 1024 and config.location.kind == "s3"
    with pytest.raises(ValueError, match="unknown key store.memory_byts; valid keys: memory_bytes"):
        StoreConfig.from_dict({"memory_byts": 1})


@pytest.mark.parametrize(
    "fields,match",
    [
        ({"memory_bytes": -1}, "memory_bytes must be >= 0"),
        ({"memory_bytes": "1GB"}, "memory_bytes must be int"),
        ({"object_store_verify_checksum": 1}, "must be bool"),
        ({"memory_bytes": True}, "must be int"),
        ({"write_queue_size": 0}, "write_queue_size must be >= 1"),
        ({"s3_read_timeout_s": 0}, "s3_read_timeout_s must be > 0"),
        ({"s3_multipart_chunk_bytes": 1024}, "5 MiB"),
        ({"directory_actor_name": ""}, "non-empty"),
    ],
)
def test_bad_values_are_rejected(fields, match):
    with pytest.raises(ValueError, match=match):
        StoreConfig(**fields)
