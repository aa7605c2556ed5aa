"""Small pure pieces of the serving layer: metric observations, chunk-id blobs, request schema."""

from __future__ import annotations

import pytest

from deployments.chunk_ids import ChunkIdStore
from deployments.errors import APIError
from deployments.metrics import Observation, request_observations, store_observations
from deployments.schema import ChatCompletionRequest, CompletionRequest, parse_body
from engine.outputs import RequestStats
from kvstore.directory import DirBlobs
from kvstore.keys import chunk_key


def test_request_observations():
    stats = RequestStats(prompt_tokens=100, prefix_hit_tokens=16, chunk_hit_tokens=64,
                         chunk_hits_by_tier={"gpu": 48, "memory": 16}, compiled_tokens=0, recomputed_tokens=20,
                         completion_tokens=5)
    obs = request_observations("chat", stats, ttft_s=0.25, e2e_s=1.5)
    key = lambda o: (o.name, sorted(o.tags.items()))  # noqa: E731
    assert sorted(obs, key=key) == sorted([
        Observation("epic_e2e_latency_seconds", 1.5, {"endpoint": "chat"}),
        Observation("epic_ttft_seconds", 0.25, {"endpoint": "chat"}),
        Observation("epic_prompt_tokens", 100, {"endpoint": "chat"}),
        Observation("epic_completion_tokens", 5, {"endpoint": "chat"}),
        Observation("epic_recomputed_tokens", 20),
        Observation("epic_cache_hit_tokens", 16, {"kind": "prefix", "tier": "gpu"}),
        Observation("epic_cache_hit_tokens", 48, {"kind": "chunk", "tier": "gpu"}),
        Observation("epic_cache_hit_tokens", 16, {"kind": "chunk", "tier": "memory"}),
    ], key=key)  # compiled_tokens 0: a zero counter increment is left out


def test_store_observations_are_increments():
    before = {"tiers": {"memory": {"errors": 0, "evictions": 2, "bytes_in": 100, "bytes_out": 0}},
              "writes": {"dropped": 1, "failed": 0}}
    after = {"tiers": {"memory": {"errors": 0, "evictions": 5, "bytes_in": 100, "bytes_out": 40},
                       "s3": {"errors": 3, "evictions": 0, "bytes_in": 0, "bytes_out": 0}},
             "writes": {"dropped": 1, "failed": 2}}
    assert store_observations(before, after) == [
        Observation("epic_store_evictions", 3, {"tier": "memory"}),
        Observation("epic_store_bytes", 40, {"tier": "memory", "direction": "out"}),
        Observation("epic_store_errors", 3, {"tier": "s3"}),
        Observation("epic_store_dropped_writes", 2),
    ]


def test_chunk_ids_round_trip_and_verify(tmp_path):
    fp = "a" * 32
    store = ChunkIdStore(DirBlobs(tmp_path), fp)
    ids = (1, 300, 70000, 5)
    key = store.put(ids)
    assert key == chunk_key(fp, ids)
    assert store.get(key) == ids
    assert ChunkIdStore(DirBlobs(tmp_path), "b" * 32).get(key) is None  # another model's reader
    (tmp_path / "chunk-ids" / key[:2] / f"{key}.ids").write_bytes(b"\x01\x00\x00\x00")  # torn / wrong
    assert store.get(key) is None
    assert store.get(chunk_key(fp, [9])) is None
    with pytest.raises(ValueError, match="not a chunk key"):
        store.get("../escape")


def test_schema_maps_to_engine_parameters():
    chat = parse_body(ChatCompletionRequest, b'{"model": "m", "max_completion_tokens": 7, "temperature": 0, '
                                              b'"stop": "x", "seed": 3, "top_k": 5, "ignore_eos": true, "messages": '
                                              b'[{"role": "developer", "content": [{"type": "text", "text": "a"}, '
                                              b'{"type": "text", "text": "b"}]}]}')
    params = chat.sampling(default_max_tokens=99)
    assert (params.max_tokens, params.temperature, params.stop, params.seed, params.top_k, params.ignore_eos) == \
        (7, 0.0, ("x",), 3, 5, True)
    assert chat.messages[0].as_template_message() == {"role": "system", "content": "ab"}
    completion = parse_body(CompletionRequest, b'{"model": "m", "prompt": [[1, 2, 3]]}')
    assert completion.prompt == [1, 2, 3] and completion.sampling(16).max_tokens == 16
    assert parse_body(CompletionRequest, b'{"model": "m", "prompt": ["one"]}').prompt == "one"


def test_schema_errors_name_the_parameter():
    with pytest.raises(APIError) as e:
        parse_body(ChatCompletionRequest, b'{"model": "m", "messages": [{"role": "user", "content": 5}]}')
    assert (e.value.status, e.value.param) == (400, "messages[0].content")
    with pytest.raises(APIError) as e:
        parse_body(CompletionRequest, b'{"model": "m", "prompt": "x", "documents": [{"text": "a"}, {"id": 3}]}')
    assert e.value.param == "documents[1].id"
