"""Object-store gets that miss the ref cache, with 8 concurrent readers: one directory actor vs
the directory sharded by key, side by side in one run.

    .venv/bin/python benchmarks/bench_directory.py [--readers 8] [--gets 300] [--shards 1,4] [--runs 3]

Every get of a reader without a ref cache asks the directory for the key's ref and then reads the
object (zero-copy, same node): the directory call is the part sharding spreads. Setup: one local
Ray node; 64 chunks of 64 KiB (bf16 KV) put once; ``--readers`` actors, each with its own
ObjectStoreTier (``object_store_ref_cache_bytes=0``), start together and each time ``--gets``
single-key gets of random present keys. Reported: per-get latency p50/p99 over all readers and
the aggregate rate, medians of ``--runs`` runs (fresh directories each run). For scale, the
second table is the ceiling of the directories themselves: lookups per second when one client
pipelines 3000 lookups (no object reads) over them.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import ray
import torch

from kvstore.config import StoreConfig
from kvstore.keys import chunk_key
from kvstore.object_store import ObjectStoreTier, open_directories

ROOT = Path(__file__).resolve().parents[1]

MiB = 1024 * 1024
FP = "bench-model"
NUM_CHUNKS = 64


def chunk(i: int) -> torch.Tensor:
    """bf16 KV ``[2, 2, 64, 2, 64]``: 64 KiB."""
    g = torch.Generator().manual_seed(i)
    return torch.randn(2, 2, 64, 2, 64, generator=g).to(torch.bfloat16)


@ray.remote(num_cpus=0)
class Reader:
    def __init__(self, config: StoreConfig, keys: list[str]) -> None:
        self.tier = ObjectStoreTier(config, FP)
        self.keys = keys

    def ready(self) -> bool:
        return self.tier.get(self.keys[0]) is not None

    def run(self, gets: int, seed: int, start_at: float) -> tuple[list[float], float]:
        """Per-get seconds, and when this reader finished (wall clock)."""
        rng = random.Random(seed)
        time.sleep(max(0.0, start_at - time.time()))
        out = []
        for _ in range(gets):
            key = rng.choice(self.keys)
            t = time.perf_counter()
            assert self.tier.get(key) is not None, key
            out.append(time.perf_counter() - t)
        return out, time.time()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def one_run(shards: int, readers: int, gets: int, seed: int) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, gets/s) of one run."""
    config = StoreConfig(object_store_bytes=256 * MiB, directory_shards=shards, object_store_ref_cache_bytes=0,
                         directory_actor_name=f"bench-dir-{uuid.uuid4().hex[:6]}")
    writer = ObjectStoreTier(config, FP)
    try:
        keys = [chunk_key(FP, [i, seed]) for i in range(NUM_CHUNKS)]
        assert all(r.stored for r in writer.put_many([(k, chunk(i)) for i, k in enumerate(keys)]))
        actors = [Reader.remote(config, keys) for _ in range(readers)]
        assert all(ray.get([a.ready.remote() for a in actors], timeout=120))
        start_at = time.time() + 1.0
        results = ray.get([a.run.remote(gets, seed * 100 + i, start_at) for i, a in enumerate(actors)], timeout=600)
        latencies = [s for lat, _ in results for s in lat]
        wall = max(end for _, end in results) - start_at
        for a in actors:
            ray.kill(a)
        return pct(latencies, 50) * 1e3, pct(latencies, 99) * 1e3, len(latencies) / wall
    finally:
        writer.destroy_directory()


def lookup_rate(shards: int, calls: int = 3000) -> float:
    """Lookups per second the directory shards answer to one pipelining client."""
    config = StoreConfig(directory_shards=shards, directory_actor_name=f"bench-dir-{uuid.uuid4().hex[:6]}")
    directories = open_directories(config)
    try:
        ray.get([d.usage.remote() for d in directories])
        start = time.perf_counter()
        ray.get([directories[i % shards].lookup.remote([chunk_key(FP, [i])], [], -1) for i in range(calls)])
        return calls / (time.perf_counter() - start)
    finally:
        for d in directories:
            ray.kill(d)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=8)
    parser.add_argument("--gets", type=int, default=300, help="gets per reader per run")
    parser.add_argument("--shards", default="1,4", help="directory shard counts to compare")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    shard_counts = [int(s) for s in args.shards.split(",")]
    ray_dir = tempfile.mkdtemp(prefix="ray-d-", dir="/tmp")  # short: Ray's socket paths must fit
    ray.init(address="local", num_cpus=2, object_store_memory=512 * MiB, include_dashboard=False,
             log_to_driver=False, _temp_dir=ray_dir, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        print("# Directory shards: uncached object-store gets with concurrent readers\n")
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"Python {platform.python_version()}, Ray {ray.__version__}, torch {torch.__version__}")
        print(f"setup: {args.readers} readers x {args.gets} gets of 64 KiB chunks ({NUM_CHUNKS} keys), "
              f"no ref cache; medians of {args.runs} runs\n")
        print("| directory shards | get p50 (ms) | get p99 (ms) | gets/s (all readers) |")
        print("|---|---|---|---|")
        for shards in shard_counts:
            runs = [one_run(shards, args.readers, args.gets, seed) for seed in range(args.runs)]
            p50, p99, rate = (statistics.median(r[i] for r in runs) for i in range(3))
            print(f"| {shards} | {p50:.2f} | {p99:.2f} | {rate:.0f} |", flush=True)
        print("\n| directory shards | lookups/s, one pipelining client (no object reads) |")
        print("|---|---|")
        for shards in shard_counts:
            print(f"| {shards} | {statistics.median(lookup_rate(shards) for _ in range(args.runs)):.0f} |", flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(ray_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
