"""The warm-up job with everything on S3 (the moto server on 127.0.0.1): a corpus of JSONL and
Parquet parts under an s3:// prefix, the chunk store and the registry in the same bucket."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deployments.model_files import fingerprint_of, tokenizer_of
from deployments.prompting import PromptBuilder
from deployments.config import load_config
from warmup.job import WarmupOptions, run_warmup, start_workers
from tests.support.store import open_registry
from kvstore.keys import key_from_object_name

from tests.support.warmup import app_config_dict, corpus_documents, write_config

NUM_DOCS = 64


@pytest.fixture(scope="module")
def s3_setup(ray_session, s3_server, tmp_path_factory, tiny_model_dir):
    """(config, bucket, documents): half the corpus as JSONL, half as Parquet, one bad line."""
    bucket = "t-warmup-s3-corpus"
    client = s3_server.client()
    client.create_bucket(Bucket=bucket)
    docs = corpus_documents(NUM_DOCS, seed=2)
    half = NUM_DOCS // 2
    jsonl = "".join(json.dumps(d) + "\n" for d in docs[:half]) + '{"id": "no-text"}\n'
    client.put_object(Bucket=bucket, Key="corpus/part-0.jsonl", Body=jsonl.encode())
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(docs[half:]), buf, row_group_size=16)
    client.put_object(Bucket=bucket, Key="corpus/part-1.parquet", Body=buf.getvalue())
    store = {"s3_endpoint_url": s3_server.endpoint_url, "s3_region": "us-east-1", "s3_max_attempts": 2}
    config = app_config_dict(tiny_model_dir, f"s3://{bucket}/store", **store)
    path = write_config(tmp_path_factory.mktemp("warmup-s3") / "config.yaml", config)
    return path, bucket, docs


@pytest.fixture(scope="module")
def pool(s3_setup):
    config, bucket, _ = s3_setup
    pool = start_workers(load_config(config), WarmupOptions(corpus=f"s3://{bucket}/corpus"))
    yield pool
    pool.close()


def run(s3_setup, pool):
    config, bucket, _ = s3_setup
    return run_warmup(WarmupOptions(corpus=f"s3://{bucket}/corpus", config=config, progress=False), pool=pool)


def stored_keys(s3_server, bucket) -> set[str]:
    pages = s3_server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="store/chunks/")
    keys = {key_from_object_name(o["Key"].removeprefix("store/")) for page in pages for o in page.get("Contents", [])}
    assert None not in keys
    return keys


def test_s3_corpus_into_the_s3_store_then_a_rerun_skips(s3_server, s3_setup, pool):
    config_path, bucket, docs = s3_setup
    config = load_config(config_path)
    fingerprint = fingerprint_of(config.engine)
    builder = PromptBuilder(tokenizer_of(config.engine), fingerprint, config.engine.chunk_tokens)
    expected = {d["id"]: builder.chunk_document(d["text"]).chunk_keys for d in docs}
    distinct = {k for keys in expected.values() for k in keys}

    c = run(s3_setup, pool).counts
    assert (c.documents, c.documents_new, c.failed, c.bad_records) == (NUM_DOCS, NUM_DOCS, 0, 1)
    assert (c.chunks, c.chunks_compiled, c.chunks_skipped) == (len(distinct), len(distinct), 0)
    assert stored_keys(s3_server, bucket) == distinct
    registry = open_registry(config.store, fingerprint)
    assert registry.list_ids() == sorted(expected)
    assert all(tuple(registry.get(i).chunk_keys) == keys for i, keys in expected.items())

    again = run(s3_setup, pool).counts
    assert (again.documents, again.documents_new, again.chunks_compiled, again.chunks_skipped) == \
        (NUM_DOCS, 0, 0, len(distinct))
