"""The router at scale, against an oracle: chunk-hit rate and p99 queue length vs replica count.

    .venv/bin/python benchmarks/bench_router_scale.py [--replicas 4,8,16,32,64] [--seeds 3]
        [--requests 16000] [--zipf 0.8] [--also-zipf 1.0] [--plot benchmarks/out/router_scale.png]

Workload (sim/workload.py): 10k documents (128-1024 tokens, chunks of at most 512) with Zipf
popularity; each request is a shared prefix, 4-8 distinct documents in random order and a
unique question. Replicas (sim/cluster.py): FIFO servers with an LRU chunk cache, Poisson
arrivals at ``utilization`` of the capacity a cluster without hits would have, so queues form.
The first quarter of each trace warms the caches and is not measured.

Policies, same trace and arrival times per seed:

- ours: router.policy.CacheAwarePolicy fed by the real residency index (decisions + stats).
  Configured for this cluster: ``cluster_weight=0`` (the simulated replicas have no cluster
  tier: a token another replica holds is computed, not fetched); the row "ours, default
  config" keeps 0.3.
- power-of-two: the cache-blind baseline.
- prefix tree: sim.baselines.PrefixTreePolicy, the decision rule of Ray's
  PrefixCacheAffinityRouter, with our imbalance threshold as its load guard.
- oracle: sim.baselines.OraclePolicy, told every replica's cache exactly; most held chunk
  tokens under our imbalance threshold.
- one shared LRU: a single cache as large as all replicas' together (context, not a router).

Targets: ours >= 0.9x the oracle's hit rate, >= 1.5x the prefix tree's, p99 queue length
<= 1.2x power-of-two's.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from router.config import RouterConfig  # noqa: E402
from router.policy import CacheAwarePolicy, PowerOfTwoPolicy  # noqa: E402
from sim.baselines import OraclePolicy, PrefixTreePolicy  # noqa: E402
from sim.cluster import LRUChunkCache, SimConfig, simulate  # noqa: E402
from sim.workload import SimRequest, WorkloadConfig, make_documents, make_requests  # noqa: E402

WORKLOAD = WorkloadConfig(num_documents=10_000, min_docs_per_request=4, max_docs_per_request=8,
                          min_doc_tokens=128, max_doc_tokens=1024, chunk_tokens=512)
SIM = SimConfig(cache_tokens=50_000, utilization=1.0, base_s=0.01, compute_s_per_token=2e-5,
                hit_s_per_token=1e-6, stats_period_s=1.0, max_queue_len=32)
OURS = RouterConfig(cluster_weight=0.0)
DEFAULT = RouterConfig()
POLICIES = ("ours", "ours, default config", "power-of-two", "prefix tree", "oracle")


def shared_lru(requests: list[SimRequest], capacity_tokens: int, warmup: int) -> float:
    cache = LRUChunkCache(capacity_tokens)
    hit = total = 0
    for i, r in enumerate(requests):
        h = cache.access(zip(r.hint.chunk_keys, r.hint.chunk_tokens))
        if i >= warmup:
            hit, total = hit + h, total + r.hint.num_chunk_tokens
    return hit / total


def run_one(name: str, requests: list[SimRequest], sim: SimConfig, seed: int):
    if name == "ours":
        return simulate(CacheAwarePolicy(OURS), requests, sim, random.Random(seed), OURS)
    if name == "ours, default config":
        return simulate(CacheAwarePolicy(DEFAULT), requests, sim, random.Random(seed), DEFAULT)
    if name == "power-of-two":
        return simulate(PowerOfTwoPolicy(), requests, sim, random.Random(seed), residency="none")
    if name == "prefix tree":
        policy = PrefixTreePolicy(imbalance_threshold=OURS.imbalance_threshold)
        return simulate(policy, requests, sim, random.Random(seed), residency="none")
    assert name == "oracle", name
    return simulate(OraclePolicy(OURS.imbalance_threshold), requests, sim, random.Random(seed), residency="exact")


def measure(num_replicas: int, zipf_s: float, num_requests: int, seeds: int) -> dict[str, dict[str, float]]:
    """Median over seeds of hit rate, p99 queue length and mean latency, per policy."""
    cfg = replace(WORKLOAD, zipf_s=zipf_s, num_requests=num_requests)
    sim = replace(SIM, num_replicas=num_replicas, warmup_requests=num_requests // 4)
    runs: dict[str, list[tuple[float, int, float]]] = {name: [] for name in POLICIES}
    bound = []
    for seed in range(seeds):
        rng = random.Random(seed)
        requests = make_requests(cfg, make_documents(cfg, rng), rng)
        for name in POLICIES:
            r = run_one(name, requests, sim, 1000 + seed)
            runs[name].append((r.hit_rate, r.p99_queue_len, r.mean_latency_s))
        bound.append(shared_lru(requests, sim.cache_tokens * num_replicas, sim.warmup_requests))
    out = {
        name: {
            "hit": statistics.median(v[0] for v in values),
            "p99q": statistics.median(v[1] for v in values),
            "lat_ms": statistics.median(v[2] for v in values) * 1e3,
        }
        for name, values in runs.items()
    }
    out["one shared LRU"] = {"hit": statistics.median(bound)}
    return out


def print_table(num_replicas: int, zipf_s: float, m: dict[str, dict[str, float]]) -> None:
    ours, oracle, prefix, pow2 = m["ours"], m["oracle"], m["prefix tree"], m["power-of-two"]
    print(f"\n### {num_replicas} replicas, Zipf s={zipf_s}\n")
    print("| policy | chunk-hit rate | p99 queue length | mean latency (ms) |")
    print("|---|---|---|---|")
    for name, row in m.items():
        if "p99q" in row:
            print(f"| {name} | {row['hit']:.3f} | {row['p99q']:g} | {row['lat_ms']:.0f} |")
        else:
            print(f"| {name} | {row['hit']:.3f} | - | - |")
    checks = [
        ("ours / oracle hit rate >= 0.9", ours["hit"] / oracle["hit"], 0.9, True),
        ("ours / prefix tree hit rate >= 1.5", ours["hit"] / prefix["hit"], 1.5, True),
        ("ours / power-of-two p99 queue <= 1.2", ours["p99q"] / pow2["p99q"], 1.2, False),
    ]
    print()
    for label, value, target, at_least in checks:
        met = value >= target if at_least else value <= target
        print(f"- {label}: {value:.2f} ({'met' if met else 'MISSED'})")
    print(f"- (oracle / prefix tree hit rate: {oracle['hit'] / prefix['hit']:.2f})")


def plot(results: dict[float, dict[int, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 3.8), squeeze=False)
    for ax, (zipf_s, by_count) in zip(axes[0], results.items()):
        counts = sorted(by_count)
        for name in (*POLICIES, "one shared LRU"):
            style = ":" if name == "one shared LRU" else "-"
            ax.plot(counts, [by_count[c][name]["hit"] for c in counts], style, marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.set_xlabel("replicas")
        ax.set_ylabel("chunk-hit rate")
        ax.set_title(f"10k documents, Zipf s={zipf_s}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    print(f"\nplot: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", default="4,8,16,32,64", help="replica counts (comma-separated)")
    parser.add_argument("--seeds", type=int, default=3, help="traces per point (median)")
    parser.add_argument("--requests", type=int, default=16_000, help="requests per trace")
    parser.add_argument("--zipf", type=float, default=0.8, help="document popularity exponent")
    parser.add_argument("--also-zipf", type=float, default=1.0,
                        help="a second exponent, at 16 and 64 replicas (negative: skip)")
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks/out/router_scale.png")
    args = parser.parse_args()
    counts = [int(c) for c in args.replicas.split(",")]
    print("# Router at scale: chunk-hit rate and p99 queue length against an oracle\n")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print(f"workload: {replace(WORKLOAD, num_requests=args.requests, zipf_s=args.zipf)}")
    print(f"replicas: {SIM} (warm-up: first {args.requests // 4} requests)")
    print(f"ours: {OURS}")
    print(f"medians of {args.seeds} seeds")
    start = time.perf_counter()
    results: dict[float, dict[int, dict]] = {args.zipf: {}}
    for count in counts:
        results[args.zipf][count] = measure(count, args.zipf, args.requests, args.seeds)
        print_table(count, args.zipf, results[args.zipf][count])
    if args.also_zipf >= 0:
        results[args.also_zipf] = {}
        for count in [c for c in (16, 64) if c in counts] or counts:
            results[args.also_zipf][count] = measure(count, args.also_zipf, args.requests, args.seeds)
            print_table(count, args.also_zipf, results[args.also_zipf][count])
    plot(results, args.plot)
    print(f"\nwall time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
