"""Overload and disconnects over HTTP on 127.0.0.1: a fixed burst of concurrent streaming requests.

    .venv/bin/python benchmarks/bench_load.py [--model DIR] [--replicas 2] [--max-ongoing 4]
        [--max-queued 12] [--factor 4] [--max-tokens 32] [--disconnect 0.25] [--seed 0]

It starts its own local Ray and Serve (2 CPU engine replicas). ``factor`` x the queue capacity
(``max_ongoing_requests * replicas + max_queued_requests``) streaming completions start at once;
every ``1 / disconnect``-th of them closes the connection after a seeded random number of tokens.
Every other request must either complete (``max_tokens`` tokens, greedy, the same text as the
same prompt alone) or get 503 with ``Retry-After``. Afterwards each replica must hold every KV
block free and no chunk pin, be the same replica (none died), and its resident memory (RSS) is
reported before and after.

Prints the setup, the status counts, TTFT p50 / p99 of the accepted requests and the memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if not __package__:  # run as a script: the repository root (tests.support) is importable
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

PROMPTS = tuple(f"Request {i}: the harbor lantern and the copper meadow" for i in range(4))
# Each prompt comes with its document (its chunks are compiled, then pinned while linked).
DOCUMENTS = tuple(" ".join(f"Paragraph {i}.{j} of the ledger: the ferry leaves the harbor at dawn." for j in range(6))
                  for i in range(len(PROMPTS)))


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request of the burst.

    ``status``: HTTP status (0: the client disconnected on purpose mid-stream); ``text``: the
    streamed completion; ``ttft_s``: seconds to the first token (None without one).
    """

    status: int
    text: str = ""
    completion_tokens: int = 0
    finish_reason: str | None = None
    done: bool = False  # the stream ended with [DONE]
    retry_after: str | None = None
    ttft_s: float | None = None
    error: dict | None = None  # an SSE error event


def body(prompt: str, max_tokens: int, stream: bool, model: str) -> dict:
    document = DOCUMENTS[PROMPTS.index(prompt)]
    return {"model": model, "prompt": prompt, "documents": [{"text": document}], "max_tokens": max_tokens,
            "temperature": 0, "ignore_eos": True, "stream": stream, **({"stream_options": {"include_usage": True}} if stream else {})}


async def one(http: httpx.AsyncClient, prompt: str, max_tokens: int, model: str,
              leave_after: int | None) -> Outcome:
    """Stream one completion; with ``leave_after``, close the connection after that many events."""
    start = time.perf_counter()
    async with http.stream("POST", "/v1/completions", json=body(prompt, max_tokens, True, model)) as r:
        if r.status_code != 200:
            await r.aread()
            return Outcome(r.status_code, retry_after=r.headers.get("retry-after"), error=r.json().get("error"))
        text, tokens, finish, done, ttft, error, events = [], 0, None, False, None, None, 0
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                break
            event = json.loads(line[6:])
            if "error" in event:
                error = event["error"]
                continue
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            for choice in event.get("choices", ()):
                if choice["text"] and ttft is None:
                    ttft = time.perf_counter() - start
                text.append(choice["text"])
                finish = choice["finish_reason"] or finish
            events += 1
            if leave_after is not None and events >= leave_after:
                return Outcome(0, "".join(text), ttft_s=ttft)
        return Outcome(200, "".join(text), tokens, finish, done, ttft_s=ttft, error=error)


async def burst(base_url: str, num_requests: int, max_tokens: int, model: str, disconnect: float,
                seed: int) -> list[Outcome]:
    """``num_requests`` concurrent streams (prompt ``i % len(PROMPTS)``); every ``1 / disconnect``-th
    one (from the first: those are admitted first) leaves after a seeded 1..max_tokens-1 events."""
    rng = random.Random(seed)
    stride = round(1 / disconnect) if disconnect > 0 else num_requests + 1
    leave = [rng.randint(1, max_tokens - 1) if i % stride == 0 else None for i in range(num_requests)]
    limits = httpx.Limits(max_connections=num_requests, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits) as http:
        return list(await asyncio.gather(*(one(http, PROMPTS[i % len(PROMPTS)], max_tokens, model, leave[i])
                                           for i in range(num_requests))))


def expected_texts(base_url: str, max_tokens: int, model: str) -> dict[str, str]:
    """Each prompt's greedy completion, sent alone (the fault-free reference)."""
    with httpx.Client(base_url=base_url, timeout=300) as http:
        return {p: http.post("/v1/completions", json=body(p, max_tokens, False, model)).json()["choices"][0]["text"]
                for p in PROMPTS}


def check(outcomes: list[Outcome], expected: dict[str, str], max_tokens: int) -> list[str]:
    """What went wrong: requests neither complete and correct, nor 503 with Retry-After."""
    problems = []
    for i, o in enumerate(outcomes):
        if o.status == 503 and o.retry_after is None:
            problems.append(f"request {i}: 503 without Retry-After")
        elif o.status == 200 and (o.error is not None or not o.done or o.finish_reason != "length"
                                  or o.completion_tokens != max_tokens
                                  or o.text != expected[PROMPTS[i % len(PROMPTS)]]):
            problems.append(f"request {i}: incomplete or wrong: {o}")
        elif o.status not in (0, 200, 503):
            problems.append(f"request {i}: status {o.status}: {o.error}")
    return problems


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(outcomes: list[Outcome]) -> dict:
    ttfts = [o.ttft_s for o in outcomes if o.status == 200 and o.ttft_s is not None]
    return {"200": sum(o.status == 200 for o in outcomes), "503": sum(o.status == 503 for o in outcomes),
            "disconnected": sum(o.status == 0 for o in outcomes),
            "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
            "ttft_p99_s": percentile(ttfts, 0.99) if ttfts else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model directory (default: a tiny random Llama built here)")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--max-ongoing", type=int, default=4)
    parser.add_argument("--max-queued", type=int, default=12)
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--disconnect", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import platform
    import tempfile

    import ray
    from ray import serve

    from tests.support.serving import app_config_dict, free_port, replica_actors, replica_load, replica_rss_bytes
    from tests.support.tiny_chat_model import build_tiny_model

    from deployments.app import build
    from deployments.config import AppConfig

    scratch = Path(tempfile.mkdtemp(prefix="bench-load-"))
    model_dir = Path(args.model) if args.model else build_tiny_model(scratch / "model")
    config = AppConfig.from_dict(app_config_dict(
        model_dir, scratch / "store", num_replicas=args.replicas, max_ongoing_requests=args.max_ongoing,
        max_queued_requests=args.max_queued))
    capacity = args.max_ongoing * args.replicas + args.max_queued
    num_requests = args.factor * capacity
    model = config.ingress.served_model_name
    ray.init(address="local", num_cpus=4, object_store_memory=256 * 1024 * 1024, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
        port = serve.context._get_global_client().http_config.port
        serve.run(build(config), name="bench-load", route_prefix="/bench-load")
        url = f"http://127.0.0.1:{port}/bench-load"
        expected = expected_texts(url, args.max_tokens, model)
        before = replica_actors("bench-load")
        rss_before = {r: replica_rss_bytes(a) for r, a in before.items()}
        start = time.perf_counter()
        outcomes = asyncio.run(burst(url, num_requests, args.max_tokens, model, args.disconnect, args.seed))
        wall = time.perf_counter() - start
        time.sleep(2 * config.replica.routing_stats_period_s)  # aborts reach the engines
        after = replica_actors("bench-load")
        loads = {r: replica_load(a) for r, a in after.items()}
        rss_after = {r: replica_rss_bytes(a) for r, a in after.items()}
    finally:
        serve.shutdown()
        ray.shutdown()
    print(f"machine: {platform.machine()} {platform.processor() or ''}, model: {model_dir.name}, "
          f"replicas {args.replicas} x max_ongoing {args.max_ongoing} + max_queued {args.max_queued} "
          f"= capacity {capacity}; {num_requests} concurrent streams ({args.factor}x), max_tokens "
          f"{args.max_tokens}, disconnect fraction {args.disconnect}, seed {args.seed}")
    print(f"wall {wall:.2f} s; {summary(outcomes)}")
    print(f"replicas before {sorted(before)} after {sorted(after)} (same set: {sorted(before) == sorted(after)})")
    for r, load in loads.items():
        print(f"replica {r}: free blocks {load['free_blocks']}/{load['total_blocks']}, pinned chunks "
              f"{load['pinned_chunks']}, RSS {rss_before.get(r, 0) / 2**20:.0f} -> {rss_after[r] / 2**20:.0f} MiB")
    problems = check(outcomes, expected, args.max_tokens)
    print(f"problems: {len(problems)}", *problems[:5], sep="\n")


if __name__ == "__main__":
    main()
