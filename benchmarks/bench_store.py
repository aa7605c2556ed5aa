"""Chunk-store tiers vs their raw baselines: get/put latency (p50, p99) and throughput for 1, 8
and 64 MiB chunks, plus the codec against a memcpy of the same bytes, side by side in one run.

    .venv/bin/python benchmarks/bench_store.py [--sizes-mib 1 8 64] [--reps 30 10 5]

Raw baselines: ``ray.put``/``ray.get`` of a numpy array (object store), ``put_object``/
``get_object`` through boto3 (S3: moto's server in its own process on 127.0.0.1), plain file
write/read (directory). Ours: the tiers themselves (codec framing and checksums included; the
object-store get also asks the directory actor for the ref). Chunks are bf16 KV of a model with
16 layers, 8 KV heads, head_dim 128 (128 KiB per token: 1 MiB = 8 tokens, 64 MiB = 512).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_report import machine_description, markdown_table
from kvstore import codec
from kvstore.config import StoreConfig
from kvstore.directory import DirBlobs
from kvstore.keys import chunk_key
from kvstore.persistent import BlobTier
from kvstore.tensors import payload_view

MiB = 1024 * 1024
FP = "bench-model"
NUM_LAYERS, NUM_KV_HEADS, HEAD_DIM = 16, 8, 128
TOKEN_BYTES = NUM_LAYERS * 2 * NUM_KV_HEADS * HEAD_DIM * 2  # bf16
OBJECT_STORE_BYTES = 1536 * MiB
TIER_BUDGET_BYTES = 1024 * MiB


def make_chunk(size_mib: int, seed: int) -> torch.Tensor:
    """bf16 KV ``[16, 2, num_tokens, 8, 128]`` of ``size_mib`` MiB."""
    g = torch.Generator().manual_seed(seed)
    num_tokens = size_mib * MiB // TOKEN_BYTES
    return torch.randn(NUM_LAYERS, 2, num_tokens, NUM_KV_HEADS, HEAD_DIM, generator=g).to(torch.bfloat16)


def timed(fn: Callable[[int], object], reps: int) -> list[float]:
    """Seconds of ``fn(i)`` for i in range(reps), after one untimed warm-up call ``fn(-1)``."""
    fn(-1)
    out = []
    for i in range(reps):
        start = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - start)
    return out


def p(samples: list[float], q: float) -> float:
    """Nearest-rank percentile, in ms."""
    s = sorted(samples)
    return 1e3 * s[min(len(s) - 1, max(0, int(np.ceil(q / 100 * len(s))) - 1))]


def row(tier: str, size_mib: int, op: str, ours: list[float], raw: list[float]) -> list:
    gbps = lambda samples: size_mib * MiB / (p(samples, 50) / 1e3) / 1e9  # noqa: E731
    return [
        tier,
        size_mib,
        op,
        p(ours, 50),
        p(ours, 99),
        gbps(ours),
        p(raw, 50),
        p(raw, 99),
        gbps(raw),
        p(ours, 50) / p(raw, 50),
    ]


def bench_tier(
    name: str,
    tier,
    raw_put: Callable,
    raw_get: Callable,
    sizes: list[int],
    reps: list[int],
    raw_cleanup: Callable[[], None] = lambda: None,
) -> list[list]:
    """Ours (``tier``) and raw (``raw_put(key, array)`` / ``raw_get(key)``) for every size;
    ``raw_cleanup()`` frees the raw objects after each size."""
    rows = []
    for size_mib, n in zip(sizes, reps):
        kv = make_chunk(size_mib, size_mib)
        array = payload_view(kv)
        tag = uuid.uuid4().hex[:6]
        keys = [chunk_key(FP, [size_mib, i + 1, hash(tag) % 1000]) for i in range(-1, n)]
        ours_put = timed(lambda i: tier.put(keys[i + 1], kv), n)
        raw_names = [f"raw-{tag}-{i}" for i in range(-1, n)]
        raw_put_s = timed(lambda i: raw_put(raw_names[i + 1], array), n)
        ours_get = timed(lambda i: tier.get(keys[0]), n)
        raw_get_s = timed(lambda i: raw_get(raw_names[0]), n)
        assert torch.equal(tier.get(keys[0]).view(torch.int16), kv.view(torch.int16))
        rows += [row(name, size_mib, "put", ours_put, raw_put_s), row(name, size_mib, "get", ours_get, raw_get_s)]
        for k in keys:
            tier.delete(k)
        raw_cleanup()
        print(f"  {name} {size_mib} MiB done", flush=True)
    return rows


def bench_object_store(sizes: list[int], reps: list[int]) -> tuple[list[list], list[list]]:
    import ray

    from kvstore.object_store import ObjectStoreTier

    ray_dir = tempfile.mkdtemp(prefix="ray-b-", dir="/tmp")  # short: Ray's socket paths must fit
    ray.init(
        address="local",
        num_cpus=2,
        object_store_memory=OBJECT_STORE_BYTES,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=ray_dir,
    )
    config = StoreConfig(object_store_bytes=TIER_BUDGET_BYTES, directory_actor_name=f"bench-{uuid.uuid4().hex[:6]}")
    tier = ObjectStoreTier(config, FP)
    # A second client of the same directory without a ref cache: every get is a directory round trip.
    uncached = ObjectStoreTier(dataclasses.replace(config, object_store_ref_cache_bytes=0), FP)
    refs: dict[str, object] = {}  # name -> ObjectRef of the current size's raw objects

    def raw_put(name, array):
        refs[name] = ray.put(array)

    def raw_get(name):
        return ray.get(refs[name])

    try:
        tier.get(chunk_key(FP, [0]))  # start the directory actor
        rows = bench_tier("object_store", tier, raw_put, raw_get, sizes, reps, refs.clear)
        batch_rows = []
        for size_mib, n in zip(sizes, reps):
            kv = make_chunk(size_mib, 2)
            k = chunk_key(FP, [size_mib, 20_000])
            tier.put(k, kv)
            raw_ref = ray.put(payload_view(kv))
            cold = timed(lambda i: uncached.get(k), n)
            raw = timed(lambda i: ray.get(raw_ref), n)
            rows.append(row("object_store", size_mib, "get, no ref cache", cold, raw))
            tier.delete(k)
            if size_mib * 8 * MiB > TIER_BUDGET_BYTES // 2:
                continue
            kv = make_chunk(size_mib, 1)
            keys = [chunk_key(FP, [size_mib, 10_000 + i]) for i in range(8)]
            tier.put_many([(k, kv) for k in keys])
            batch = timed(lambda i: tier.get_many(keys), n)
            raw_refs = [ray.put(payload_view(kv)) for _ in keys]
            raw = timed(lambda i: ray.get(raw_refs), n)
            batch_rows.append(
                ["object_store", size_mib, "get_many x8", p(batch, 50) / 8, p(raw, 50) / 8, p(batch, 50) / p(raw, 50)]
            )
            tier.delete_many(keys)
        return rows, batch_rows
    finally:
        tier.destroy_directory()
        ray.shutdown()
        shutil.rmtree(ray_dir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_s3(sizes: list[int], reps: list[int]) -> list[list]:
    from kvstore.s3 import S3Blobs, make_s3_client

    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    try:
        config = StoreConfig(
            persistent="s3://bench/store",
            s3_endpoint_url=f"http://127.0.0.1:{port}",
            s3_region="us-east-1",
            object_store_bytes=0,
        )
        client = make_s3_client(config)
        for _ in range(100):
            try:
                client.create_bucket(Bucket="bench")
                break
            except Exception:  # the server is still starting
                time.sleep(0.1)
        tier = BlobTier("s3", S3Blobs(client, "bench", "store", config), FP)
        return bench_tier(
            "s3",
            tier,
            lambda name, array: client.put_object(Bucket="bench", Key=f"raw/{name}", Body=array.tobytes()),
            lambda name: client.get_object(Bucket="bench", Key=f"raw/{name}")["Body"].read(),
            sizes,
            reps,
        )
    finally:
        server.terminate()
        server.wait(10)


def bench_dir(sizes: list[int], reps: list[int]) -> list[list]:
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        root = Path(tmp)
        tier = BlobTier("dir", DirBlobs(root / "store"), FP)

        def raw_put(name, array):
            with open(root / name, "wb") as f:
                f.write(array)

        def raw_get(name):
            with open(root / name, "rb") as f:
                return f.read()

        return bench_tier("dir", tier, raw_put, raw_get, sizes, reps)


def bench_codec(sizes: list[int], reps: list[int]) -> list[list]:
    rows = []
    key = chunk_key(FP, [1])
    for size_mib, n in zip(sizes, reps):
        kv = make_chunk(size_mib, 3)
        payload = payload_view(kv)
        target = np.empty_like(payload)
        memcpy = timed(lambda i: np.copyto(target, payload), n)
        encode = timed(lambda i: codec.encode(key, FP, "bfloat16", tuple(kv.shape), payload), n)
        enc = codec.encode(key, FP, "bfloat16", tuple(kv.shape), payload)
        stored = bytearray(enc.head) + bytearray(enc.payload)
        decode = timed(lambda i: codec.decode(stored, key, FP), n)
        framing = timed(lambda i: codec.check_payload(codec.decode_head(enc.head, key, FP), payload, False), n)
        checksum = timed(lambda i: codec.payload_checksum(payload), n)
        m = p(memcpy, 50)
        rows.append(
            [
                size_mib,
                m,
                p(encode, 50),
                p(decode, 50),
                p(framing, 50),
                p(checksum, 50),
                f"{100 * p(framing, 50) / m:.1f}%",
                f"{100 * p(decode, 50) / m:.0f}%",
            ]
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes-mib", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--reps", type=int, nargs="+", default=[30, 10, 5], help="timed repetitions per size")
    ap.add_argument("--tiers", nargs="+", default=["codec", "object_store", "dir", "s3"])
    args = ap.parse_args()
    if len(args.reps) != len(args.sizes_mib):
        ap.error("--reps needs one count per size")
    torch.set_num_threads(1)

    print("## Setup")
    for k, v in machine_description(torch.device("cpu")).items():
        print(f"- {k}: {v}")
    print(
        f"- CPU cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} at start (a shared machine is noisy); "
        f"chunk sizes {args.sizes_mib} MiB, repetitions {args.reps} (+1 warm-up; codec x4)"
    )
    print(
        f"- Ray object store {OBJECT_STORE_BYTES // MiB} MiB, our tier's budget {TIER_BUDGET_BYTES // MiB} MiB; "
        f"S3 = moto server (own process, 127.0.0.1); dir = {tempfile.gettempdir()} (page cache, no fsync)"
    )
    print(flush=True)

    tables = []
    if "codec" in args.tiers:
        tables.append(
            (
                "Codec vs memcpy (ms, p50)",
                markdown_table(
                    [
                        "MiB",
                        "memcpy",
                        "encode (xxh3)",
                        "decode (verified)",
                        "decode without checksum",
                        "xxh3 alone",
                        "unverified decode / memcpy",
                        "verified decode / memcpy",
                    ],
                    bench_codec(args.sizes_mib, [4 * n for n in args.reps]),
                ),
            )
        )
    headers = [
        "tier",
        "MiB",
        "op",
        "ours p50 ms",
        "ours p99 ms",
        "ours GB/s",
        "raw p50 ms",
        "raw p99 ms",
        "raw GB/s",
        "ours/raw p50",
    ]
    rows: list[list] = []
    batch_rows: list[list] = []
    if "object_store" in args.tiers:
        os_rows, batch_rows = bench_object_store(args.sizes_mib, args.reps)
        rows += os_rows
    if "dir" in args.tiers:
        rows += bench_dir(args.sizes_mib, args.reps)
    if "s3" in args.tiers:
        rows += bench_s3(args.sizes_mib, args.reps)
    if rows:
        tables.append(
            ("Tiers vs raw baselines (p99 = slowest of the repetitions at these counts)", markdown_table(headers, rows))
        )
    if batch_rows:
        tables.append(
            (
                "Object store, batched get of 8 chunks (ms per chunk, p50)",
                markdown_table(["tier", "MiB", "op", "ours", "raw ray.get(list)", "ours/raw"], batch_rows),
            )
        )
    for title, table in tables:
        print(f"## {title}\n\n{table}\n")


if __name__ == "__main__":
    main()
