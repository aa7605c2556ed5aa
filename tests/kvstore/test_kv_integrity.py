"""Corrupt bytes in the bucket or directory are a miss counted as an error, never wrong data."""

from __future__ import annotations

import pytest
import torch

from kvstore import codec
from kvstore.builder import build_store
from kvstore.config import StoreConfig
from kvstore.keys import chunk_object_name
from kvstore.tensors import payload_view

from tests.support.store import FP, key, make_kv, same_bits, s3_config


class Backend:
    """Raw access to where a store keeps its objects: a directory or an S3 prefix."""

    def __init__(self, kind, request, tmp_path):
        self.kind = kind
        if kind == "dir":
            self.root = tmp_path / "store"
            self.config = StoreConfig(persistent=str(self.root), memory_bytes=0, object_store_bytes=0)
        else:
            server = request.getfixturevalue("s3_server")
            self.bucket = request.getfixturevalue("s3_bucket")
            self.client = server.client()
            self.config = s3_config(server, self.bucket, memory_bytes=0)

    def read(self, name: str) -> bytearray:
        if self.kind == "dir":
            return bytearray((self.root / name).read_bytes())
        return bytearray(self.client.get_object(Bucket=self.bucket, Key=f"store/{name}")["Body"].read())

    def write(self, name: str, data: bytes) -> None:
        if self.kind == "dir":
            (self.root / name).parent.mkdir(parents=True, exist_ok=True)
            (self.root / name).write_bytes(data)
        else:
            self.client.put_object(Bucket=self.bucket, Key=f"store/{name}", Body=bytes(data))


@pytest.fixture(params=["dir", "s3"])
def backend(request, tmp_path):
    return Backend(request.param, request, tmp_path)


def _errors(store) -> int:
    return store.stats()["tiers"][store.persistent.name]["errors"]


@pytest.mark.parametrize("where", ["payload_first", "payload_last", "header_field", "prefix"])
def test_flipped_byte_is_a_counted_miss(backend, where):
    store = build_store(backend.config, FP)
    kv = make_kv(7, torch.bfloat16)
    store.put_chunk(key(7), kv)
    assert store.flush(10)
    name = chunk_object_name(key(7))
    good = backend.read(name)
    head_len = len(good) - kv.nbytes
    offset = {"payload_first": head_len, "payload_last": len(good) - 1, "header_field": 40, "prefix": 5}[where]
    bad = bytearray(good)
    bad[offset] ^= 0x10
    backend.write(name, bad)

    assert store.get_chunk(key(7)) is None
    assert _errors(store) == 1
    # Rewriting the chunk heals it.
    backend.write(name, good)
    hit = store.get_chunk(key(7))
    assert hit is not None and hit.tier == backend.kind and same_bits(hit.kv, kv)
    store.close()


def test_header_of_another_model_is_a_miss(backend):
    store = build_store(backend.config, FP)
    kv = make_kv(8)
    enc = codec.encode(key(8), "some-other-model", "float32", tuple(kv.shape), payload_view(kv))
    backend.write(chunk_object_name(key(8)), enc.head + enc.payload.tobytes())
    assert store.get_chunk(key(8)) is None
    assert _errors(store) == 1
    # The same bytes written for our model are served.
    enc = codec.encode(key(8), FP, "float32", tuple(kv.shape), payload_view(kv))
    backend.write(chunk_object_name(key(8)), enc.head + enc.payload.tobytes())
    assert same_bits(store.get_chunk(key(8)).kv, kv)
    store.close()


def test_truncated_object_is_a_miss(backend):
    store = build_store(backend.config, FP)
    store.put_chunk(key(9), make_kv(9))
    assert store.flush(10)
    name = chunk_object_name(key(9))
    backend.write(name, backend.read(name)[:-100])
    assert store.get_chunk(key(9)) is None
    assert _errors(store) == 1
    store.close()
