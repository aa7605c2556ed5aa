"""End-to-end serving benchmark over HTTP on 127.0.0.1: a multi-user RAG workload.

    .venv/bin/python benchmarks/bench_serving.py [--config deployments/default.yaml] [--replicas 2]
        [--docs 24] [--doc-sentences 10] [--docs-per-request 4] [--requests 48]
        [--router-requests 96] [--rate 2.0] [--max-tokens 8] [--runs 1] [--out benchmarks/out]

Workload: a pool of documents; each request a random subset of them in random order plus a
question, sent to ``/v1/chat/completions`` (streamed) at Poisson arrival times (open loop). It
starts its own local Ray and Serve.

1. Link policies (our router; every document compiled once before timing, so the store is
   warm): TTFT p50 / p99 and completed requests per second for full, prefix, cacheblend-15
   and legolink-16. Each policy and run gets its own trace (same statistics, other draws):
   replaying one would hand the later policies exact-prefix hits on the earlier prompts.
2. Routers (legolink-16; no store tier shared between replicas and each replica's chunk pool
   about half the pool, so a chunk hit means the request went where its documents were):
   chunk-hit rate of our cache-aware router, Serve's power-of-two and Ray's
   PrefixCacheAffinityRouter, each from a cold start on the same traces (longer ones, so the
   steady state outweighs the first compile of every document).

Prints the setup and both tables (medians over ``--runs``); saves a plot and the numbers as
JSON under ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import random
import socket
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from deployments.app import build
from deployments.config import AppConfig, load_config

ROOT = Path(__file__).resolve().parents[1]

POLICIES = {
    "full": {"name": "full"},
    "prefix": {"name": "prefix"},
    "cacheblend-15": {"name": "cacheblend", "ratio": 0.15},
    "legolink-16": {"name": "legolink", "k": 16},
}
ROUTERS = ("cache_aware", "power_of_two", "prefix_cache_affinity")
WORDS = ("harbor ferry lantern copper meadow orchard signal canyon glacier market pepper saddle tunnel "
         "velvet anchor bridge candle desert ember forest harvest island kettle ladder marble needle ocean "
         "quartz ribbon silver timber valley wagon river stone garden winter falcon library engine").split()


@dataclass(frozen=True)
class Request:
    arrival_s: float
    documents: tuple[str, ...]
    question: str


@dataclass
class Result:
    ttft_s: float
    e2e_s: float
    done_s: float
    usage: dict


def make_documents(n: int, sentences: int, rng: random.Random) -> list[str]:
    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12))).capitalize() + "."

    return [" ".join(sentence() for _ in range(sentences)) for _ in range(n)]


def make_trace(docs: list[str], n: int, per_request: int, rate: float, rng: random.Random) -> list[Request]:
    t, trace = 0.0, []
    for i in range(n):
        t += rng.expovariate(rate)
        trace.append(Request(t, tuple(rng.sample(docs, per_request)), f"Question {i}: which {rng.choice(WORDS)}?"))
    return trace


async def send(http: httpx.AsyncClient, req: Request, model: str, policy: dict, max_tokens: int,
               start: float) -> Result:
    await asyncio.sleep(max(0.0, start + req.arrival_s - time.perf_counter()))
    sent = time.perf_counter()
    body = {"model": model, "max_tokens": max_tokens, "temperature": 0, "stream": True, "ignore_eos": True,
            "stream_options": {"include_usage": True}, "link_policy": policy,
            "messages": [{"role": "user", "content": req.question}],
            "documents": [{"text": d} for d in req.documents]}
    ttft, usage = None, None
    async with http.stream("POST", "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {(await r.aread()).decode()}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if ttft is None and event["choices"] and event["choices"][0]["delta"].get("content"):
                ttft = time.perf_counter() - sent
            if event.get("usage"):
                usage = event["usage"]
    done = time.perf_counter()
    return Result(ttft if ttft is not None else done - sent, done - sent, done, usage)


async def run_trace(url: str, trace: list[Request], model: str, policy: dict, max_tokens: int) -> list[Result]:
    limits = httpx.Limits(max_connections=len(trace), max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        start = time.perf_counter()
        results = await asyncio.gather(*(send(http, r, model, policy, max_tokens, start) for r in trace))
    return list(results)


def summarize(results: list[Result]) -> dict:
    ttfts = sorted(r.ttft_s for r in results)
    span = max(r.done_s for r in results) - min(r.done_s - r.e2e_s for r in results)
    prompt = sum(r.usage["prompt_tokens"] for r in results)
    hit = sum(r.usage["cache"]["chunk_hit_tokens"] for r in results)
    chunk = hit + sum(r.usage["cache"]["compiled_tokens"] for r in results)
    return {
        "ttft_p50_ms": 1000 * statistics.median(ttfts),
        "ttft_p99_ms": 1000 * ttfts[min(len(ttfts) - 1, round(0.99 * (len(ttfts) - 1)))],
        "requests_per_s": len(results) / span,
        "cached_fraction": sum(r.usage["prompt_tokens_details"]["cached_tokens"] for r in results) / prompt,
        "chunk_hit_rate": hit / chunk if chunk else 0.0,
        "recomputed_fraction": sum(r.usage["cache"]["recomputed_tokens"] for r in results) / prompt,
    }


def median_of(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def deploy(config: AppConfig, name: str):
    from ray import serve

    serve.run(build(config), name=name, route_prefix=f"/{name}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kv_bytes_per_token(config: AppConfig) -> int:
    from engine.hf_config import load_model_spec
    from engine.model_source import resolve_model_dir

    spec = load_model_spec(resolve_model_dir(config.engine.model, config.engine.model_cache_dir))
    itemsize = {"float32": 4, "bfloat16": 2, "float16": 2}[config.engine.dtype]
    return spec.num_layers * 2 * spec.num_kv_heads * spec.head_dim * itemsize


def document_tokens(config: AppConfig, docs: list[str]) -> int:
    from deployments.model_files import tokenizer_of
    from deployments.prompting import PromptBuilder

    builder = PromptBuilder(tokenizer_of(config.engine), "bench", config.engine.chunk_tokens)
    return sum(builder.chunk_document(d).num_tokens for d in docs)


def plot(policies: dict, routers: dict, path: Path, setup: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(policies)
    x = range(len(names))
    a.bar([i - 0.2 for i in x], [policies[n]["ttft_p50_ms"] for n in names], 0.4, label="p50")
    a.bar([i + 0.2 for i in x], [policies[n]["ttft_p99_ms"] for n in names], 0.4, label="p99")
    a.set_xticks(list(x), names)
    a.set_yscale("log")
    a.set_ylabel("TTFT (ms, log scale)")
    a.set_title("TTFT by link policy")
    a.legend()
    b.bar(list(routers), [routers[n]["chunk_hit_rate"] for n in routers], color="tab:green")
    b.set_ylim(0, 1)
    b.set_ylabel("chunk-hit rate")
    b.set_title("chunk hits by router (legolink-16)")
    fig.suptitle(setup, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--docs", type=int, default=24)
    p.add_argument("--doc-sentences", type=int, default=10)
    p.add_argument("--docs-per-request", type=int, default=4)
    p.add_argument("--requests", type=int, default=48, help="requests per link-policy run")
    p.add_argument("--router-requests", type=int, default=96, help="requests per router run")
    p.add_argument("--rate", type=float, default=2.0, help="mean arrivals per second (Poisson)")
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = p.parse_args()

    import ray
    from ray import serve

    base = load_config(args.config)
    base = dataclasses.replace(base, replica=dataclasses.replace(base.replica, num_replicas=args.replicas))
    model = base.ingress.served_model_name
    docs = make_documents(args.docs, args.doc_sentences, random.Random(args.seed))

    def trace_for(label: str, run: int, num_requests: int) -> list[Request]:
        rng = random.Random(f"{args.seed}/{label}/{run}")
        return make_trace(docs, num_requests, args.docs_per_request, args.rate, rng)

    pool_tokens = document_tokens(base, docs)
    setup = (f"{platform.machine()} {os.cpu_count()} CPUs, model {Path(base.engine.model).name} ({base.engine.device}, "
             f"{base.engine.dtype}), {args.replicas} replicas; {args.docs} documents ({pool_tokens} tokens), "
             f"{args.docs_per_request} per request, {args.requests} (policies) / {args.router_requests} (routers) "
             f"requests at {args.rate}/s Poisson, "
             f"{args.max_tokens} output tokens; median of {args.runs} run(s)")
    print(setup, flush=True)

    ray.init(address="local", num_cpus=base.ray.num_cpus, object_store_memory=base.ray.object_store_memory,
             include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}"
    def measure(app: str, policy: dict, trace: list[Request]) -> dict:
        return summarize(asyncio.run(run_trace(f"{url}/{app}", trace, model, policy, args.max_tokens)))

    try:
        policies = {}
        deploy(base, "bench")
        warm = [Request(0.0, (d,), "Warm up?") for d in docs]
        asyncio.run(run_trace(f"{url}/bench", warm, model, POLICIES["legolink-16"], 1))
        for label, policy in POLICIES.items():
            runs = [measure("bench", policy, trace_for(label, r, args.requests)) for r in range(args.runs)]
            policies[label] = median_of(runs)
            print(f"  {label}: {policies[label]}", flush=True)
        serve.delete("bench")

        isolated = dataclasses.replace(
            base, store=dataclasses.replace(base.store, memory_bytes=0, object_store_bytes=0, persistent=""),
            engine=dataclasses.replace(base.engine, chunk_pool_bytes=pool_tokens * kv_bytes_per_token(base) // 2))
        routers = {}
        for router in ROUTERS:
            config = dataclasses.replace(isolated, replica=dataclasses.replace(isolated.replica, request_router=router))
            runs = []
            for run in range(args.runs):
                name = f"bench-{router.replace('_', '-')}-{run}"
                deploy(config, name)
                runs.append(measure(name, POLICIES["legolink-16"], trace_for("routers", run, args.router_requests)))
                serve.delete(name)
            routers[router] = median_of(runs)
            print(f"  {router}: {routers[router]}", flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()

    print()
    print(f"{'link policy':<16}{'TTFT p50 ms':>13}{'TTFT p99 ms':>13}{'req/s':>8}{'cached':>8}{'recomputed':>12}")
    for label, s in policies.items():
        print(f"{label:<16}{s['ttft_p50_ms']:>13.1f}{s['ttft_p99_ms']:>13.1f}{s['requests_per_s']:>8.2f}"
              f"{s['cached_fraction']:>8.0%}{s['recomputed_fraction']:>12.0%}")
    print()
    print(f"{'router':<24}{'chunk-hit rate':>15}{'TTFT p50 ms':>13}{'req/s':>8}")
    for router, s in routers.items():
        print(f"{router:<24}{s['chunk_hit_rate']:>15.1%}{s['ttft_p50_ms']:>13.1f}{s['requests_per_s']:>8.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    plot(policies, routers, args.out / "bench_serving.png", setup)
    (args.out / "bench_serving.json").write_text(json.dumps({"setup": setup, "policies": policies,
                                                              "routers": routers}, indent=2))
    print(f"\nplot: {args.out / 'bench_serving.png'}")

if __name__ == "__main__":
    main()
