"""Chunk-hit rate of three routers on the permuted-document workload, side by side.

    .venv/bin/python benchmarks/bench_router.py [--requests 2000] [--seeds 5]
        [--serve-requests 400] [--serve-runs 3] [--no-serve]

Workload (sim/workload.py, sim/cluster.py): a pool of documents, each request a shared system prefix, a
random subset of documents in random order and a unique question. Replicas are FIFO servers
with an LRU chunk cache; a missed token costs prefill time, a hit token almost nothing.

1. Simulation (pure, median of ``--seeds`` runs): our CacheAwarePolicy vs PowerOfTwoPolicy,
   both fed by the same residency index and stats loop, and the re-implementation of Ray's
   prefix-tree rule that bench_router_scale.py uses (to set against the real class in 2.). For scale, the hit rate of one LRU
   cache as large as all replicas' together (an upper bound no router reaches: it never holds
   a chunk twice).
2. Real Ray Serve (median of ``--serve-runs``): the same trace, open-loop Poisson arrivals, through a
   handle to 2 dummy replicas that model the LRU caches and service times (serialized by a
   lock, so queues form) and publish make_routing_stats. Routers: ours
   (CacheAwareRequestRouter), Serve's default power-of-two, and Ray's own
   PrefixCacheAffinityRouter (the actual class; it matches the request's ``prompt`` text, in
   which one character stands for one token).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import string
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from router.config import RouterConfig  # noqa: E402
from router.hint import RoutingHint  # noqa: E402
from router.policy import CacheAwarePolicy, PowerOfTwoPolicy  # noqa: E402
from router.stats import make_routing_stats  # noqa: E402
from sim.baselines import PrefixTreePolicy  # noqa: E402
from sim.cluster import LRUChunkCache, SimConfig, simulate  # noqa: E402
from sim.workload import Document, SimRequest, WorkloadConfig, make_documents, make_requests  # noqa: E402

WORKLOAD = WorkloadConfig(num_documents=64, min_docs_per_request=4, max_docs_per_request=4, zipf_s=0.0)
SIM = SimConfig(num_replicas=2, cache_tokens=20_000, utilization=0.7, base_s=0.005,
                compute_s_per_token=1e-5, hit_s_per_token=5e-7, stats_period_s=0.5,
                max_queue_len=32)
ROUTER = RouterConfig()


@dataclass(frozen=True)
class BenchRequest:
    """The engine call's argument: text for prefix matching, a hint for our router."""

    prompt: str
    routing_hint: RoutingHint


def upper_bound(requests: list[SimRequest]) -> float:
    """Hit rate of one LRU cache the size of all replicas' caches together."""
    cache = LRUChunkCache(SIM.cache_tokens * SIM.num_replicas)
    hit = sum(cache.access(zip(r.hint.chunk_keys, r.hint.chunk_tokens)) for r in requests)
    return hit / sum(r.hint.num_chunk_tokens for r in requests)


def run_simulation(num_requests: int, seeds: int) -> None:
    cfg = WorkloadConfig(**{**WORKLOAD.__dict__, "num_requests": num_requests})
    rows = {"cache-aware (ours)": [], "power-of-two": [], "prefix tree (sim/baselines.py)": [],
            "one shared cache (bound)": []}
    shares, latencies = {k: [] for k in rows}, {k: [] for k in rows}
    for seed in range(seeds):
        rng = random.Random(seed)
        requests = make_requests(cfg, make_documents(cfg, rng), rng)
        for name, policy in (("cache-aware (ours)", CacheAwarePolicy(ROUTER)),
                             ("power-of-two", PowerOfTwoPolicy()),
                             ("prefix tree (sim/baselines.py)", PrefixTreePolicy(ROUTER.imbalance_threshold))):
            result = simulate(policy, requests, SIM, random.Random(1000 + seed), ROUTER)
            rows[name].append(result.hit_rate)
            shares[name].append(result.max_replica_share)
            latencies[name].append(result.mean_latency_s)
        rows["one shared cache (bound)"].append(upper_bound(requests))
    print(f"\n## 1. Simulation: {num_requests} requests x {seeds} seeds (median)\n")
    print("| router | chunk-hit rate | busiest replica share | mean latency (ms) |")
    print("|---|---|---|---|")
    for name, rates in rows.items():
        share = f"{statistics.median(shares[name]):.2f}" if shares[name] else "-"
        lat = f"{statistics.median(latencies[name]) * 1e3:.1f}" if latencies[name] else "-"
        print(f"| {name} | {statistics.median(rates):.3f} | {share} | {lat} |")


def prompt_text(request: SimRequest, docs: list[Document], question_id: int) -> str:
    """One character per token: the shared prefix, the documents in order, a unique question."""
    def text(seed: str, n: int) -> str:
        return "".join(random.Random(seed).choices(string.ascii_lowercase, k=n))

    parts = [text("prefix", WORKLOAD.prefix_tokens)]
    parts += [text(f"doc-{d}", sum(docs[d].chunk_tokens)) for d in request.doc_ids]
    parts.append(text(f"question-{question_id}", WORKLOAD.question_tokens))
    return "".join(parts)


def build_app(router_name: str):
    from ray import serve
    from ray.serve.config import RequestRouterConfig

    if router_name == "cache-aware (ours)":
        config = RequestRouterConfig(
            request_router_class="router.serve_adapter:CacheAwareRequestRouter",
            request_router_kwargs=ROUTER.to_dict(),
            request_routing_stats_period_s=SIM.stats_period_s,
        )
    elif router_name == "PrefixCacheAffinityRouter":
        config = RequestRouterConfig(
            request_router_class="ray.llm._internal.serve.routing_policies.prefix_aware."
            "prefix_aware_router:PrefixCacheAffinityRouter",
            # Same load guard as ours; its other knobs at their defaults.
            request_router_kwargs={"imbalanced_threshold": ROUTER.imbalance_threshold},
            request_routing_stats_period_s=SIM.stats_period_s,
        )
    else:
        config = RequestRouterConfig(request_routing_stats_period_s=SIM.stats_period_s)

    @serve.deployment(num_replicas=SIM.num_replicas, max_ongoing_requests=SIM.max_queue_len,
                      ray_actor_options={"num_cpus": 0}, request_router_config=config)
    class LRUReplica:
        def __init__(self) -> None:
            self._cache = LRUChunkCache(SIM.cache_tokens)
            self._server = asyncio.Lock()
            self._in_flight = 0
            self._replica_id = serve.get_replica_context().replica_id.unique_id

        async def __call__(self, request: BenchRequest) -> tuple[str, int, int]:
            self._in_flight += 1
            try:
                async with self._server:
                    h = request.routing_hint
                    hit = self._cache.access(zip(h.chunk_keys, h.chunk_tokens))
                    await asyncio.sleep(SIM.base_s + SIM.compute_s_per_token * (h.total_tokens - hit)
                                        + SIM.hit_s_per_token * hit)
                return self._replica_id, hit, h.num_chunk_tokens
            finally:
                self._in_flight -= 1

        def record_routing_stats(self) -> dict:
            return make_routing_stats(queue_len=self._in_flight, running_tokens=0, free_blocks=0,
                                    total_blocks=0, gpu_keys=self._cache.keys_mru(), host_keys=())

    return LRUReplica.bind()


async def drive(handle, requests: list[BenchRequest], rate: float, seed: int):
    """Open-loop Poisson arrivals; returns (replica, hit, chunk tokens, latency) per request."""
    rng = random.Random(seed)

    async def one(request: BenchRequest):
        start = time.perf_counter()
        replica_id, hit, tokens = await handle.remote(request)
        return replica_id, hit, tokens, time.perf_counter() - start

    tasks, next_at = [], time.perf_counter()
    for request in requests:
        next_at += rng.expovariate(rate)
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        tasks.append(asyncio.create_task(one(request)))
    return await asyncio.gather(*tasks)


SERVE_ROUTERS = {"cache-aware (ours)": "ours", "power-of-two": "pow2",
                 "PrefixCacheAffinityRouter": "prefix"}


def run_serve(num_requests: int, runs: int) -> None:
    import ray
    from ray import serve

    cfg = WorkloadConfig(**{**WORKLOAD.__dict__, "num_requests": num_requests})
    rng = random.Random(0)
    docs = make_documents(cfg, rng)
    trace = make_requests(cfg, docs, rng)
    requests = [BenchRequest(prompt_text(r, docs, i), r.hint) for i, r in enumerate(trace)]
    mean_tokens = statistics.fmean(r.hint.total_tokens for r in trace)
    rate = SIM.utilization * SIM.num_replicas / (SIM.base_s + SIM.compute_s_per_token * mean_tokens)

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    serve.start(http_options={"host": "127.0.0.1"})
    print(f"\n## 2. Real Ray Serve: {num_requests} requests, {rate:.0f} req/s Poisson, "
          f"{SIM.num_replicas} replicas, {runs} runs each (median; fresh replicas every run)\n")
    print("| router | chunk-hit rate | busiest replica share | mean latency (ms) | p95 (ms) |")
    print("|---|---|---|---|---|")
    try:
        for name, short in SERVE_ROUTERS.items():
            hits, shares, means, p95s = [], [], [], []
            for run in range(runs):
                # A distinct app per router and run: a process keeps one router per deployment,
                # so redeploying under the same name would keep the previous router class.
                app = f"bench-router-{short}-{run}"
                handle = serve.run(build_app(name), name=app, route_prefix=None)
                results = asyncio.run(drive(handle, requests, rate, seed=run))
                serve.delete(app)
                hits.append(sum(r[1] for r in results) / sum(r[2] for r in results))
                shares.append(Counter(r[0] for r in results).most_common(1)[0][1] / len(results))
                latencies = sorted(r[3] for r in results)
                means.append(statistics.fmean(latencies))
                p95s.append(latencies[int(0.95 * (len(latencies) - 1))])
            print(f"| {name} | {statistics.median(hits):.3f} | {statistics.median(shares):.2f} | "
                  f"{statistics.median(means) * 1e3:.0f} | {statistics.median(p95s) * 1e3:.0f} |",
                  flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="simulated requests per run")
    parser.add_argument("--seeds", type=int, default=5, help="simulation runs (median)")
    parser.add_argument("--serve-requests", type=int, default=400, help="requests per Serve run")
    parser.add_argument("--serve-runs", type=int, default=3, help="Serve runs per router (median)")
    parser.add_argument("--no-serve", action="store_true", help="skip the Ray Serve comparison")
    args = parser.parse_args()
    print("# Router benchmark: chunk-hit rate on permuted documents\n")
    import ray

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, Ray {ray.__version__}")
    print(f"workload: {WORKLOAD}")
    print(f"replicas: {SIM}")
    print(f"our router: {ROUTER}")
    run_simulation(args.requests, args.seeds)
    if not args.no_serve:
        run_serve(args.serve_requests, args.serve_runs)


if __name__ == "__main__":
    main()
