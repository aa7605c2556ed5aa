"""Warm-up job on this machine: compile throughput with 1 and 2 workers, and the TTFT of the
first request naming documents after a warm-up (stored chunks) vs without one (compiled on the
request), side by side in one run.

    .venv/bin/python benchmarks/bench_warmup.py [--docs 200] [--runs 3] [--requests 5]

The model is the embedded default's (deployments/default.yaml, SmolLM2-135M-Instruct), its
dequantized directory copied first so that nothing written meanwhile can change the chunk
keys under the run. The corpus is generated
(seeded): documents of a few paragraphs, cut by KVSplit as the serving config says. Warm-up
times exclude starting the workers (reported apart); every run starts from an empty store.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from deployments.config import load_config
from warmup.job import WarmupOptions, run_warmup, start_workers
from engine.model_source import resolve_model_dir

ROOT = Path(__file__).resolve().parents[1]

WORDS = ("harbor lantern copper meadow signal orchard winter canyon violet engine library falcon glacier "
         "market pepper saddle tunnel velvet whisper anchor bridge candle desert ember forest harvest island "
         "kettle ladder marble needle ocean pillow quartz ribbon silver timber valley wagon river stone").split()
QUESTION = " Question: which harbor is named in the documents?\nAnswer:"
DOCS_PER_REQUEST = 3


def document(rng: random.Random) -> str:
    paragraphs = []
    for _ in range(rng.randint(1, 4)):  # at most ~600 tokens: 3 documents + question fit the context
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 10))).capitalize() + "."
                     for _ in range(rng.randint(2, 4))]
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def write_corpus(path: Path, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    docs = [{"id": f"bench-{i:05d}", "text": document(rng)} for i in range(n)]
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return docs


def write_config(tmp: Path, model_dir: Path, store: Path) -> Path:
    """deployments/default.yaml with the copied model, a private store and no cluster tier."""
    config = yaml.safe_load((ROOT / "deployments" / "default.yaml").read_text())
    config["engine"]["model"] = str(model_dir)
    config["store"].update(persistent=f"dir://{store}", object_store_bytes=0)
    config["replica"].update(num_cpus=0)
    path = tmp / f"config-{store.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_warmup(tmp: Path, model_dir: Path, corpus: Path, workers: int, runs: int) -> dict:
    """Median throughput of ``runs`` warm-ups from an empty store with ``workers`` workers."""
    samples, startup = [], 0.0
    for run in range(runs):
        store = tmp / f"store-w{workers}-r{run}"
        config = write_config(tmp, model_dir, store)
        options = WarmupOptions(corpus=str(corpus), config=config, workers=workers, device="cpu", progress=False)
        start = time.perf_counter()
        pool = start_workers(load_config(config), options)
        startup = time.perf_counter() - start
        try:
            summary = run_warmup(options, pool=pool)
        finally:
            pool.close()
        assert summary.counts.failed == 0 and summary.counts.chunks_skipped == 0, summary.as_dict()
        samples.append(summary)
        shutil.rmtree(store)
    mid = sorted(samples, key=lambda s: s.tokens_per_s)[len(samples) // 2]
    return {"workers": workers, "summary": mid, "startup_s": startup,
            "tokens_per_s": [round(s.tokens_per_s) for s in samples]}


def first_token_s(url: str, body: dict) -> tuple[float, dict]:
    """Seconds to the first streamed token, and the request's usage."""
    start = time.perf_counter()
    first, usage = None, None
    with httpx.stream("POST", url, json={**body, "stream": True, "stream_options": {"include_usage": True}},
                      timeout=300) as reply:
        assert reply.status_code == 200, reply.read()
        for line in reply.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[len("data: "):])
            if first is None and event["choices"] and event["choices"][0].get("text"):
                first = time.perf_counter() - start
            if event.get("usage"):
                usage = event["usage"]
    return first, usage


def measure_ttft(config: Path, port: int, doc_sets: list[list[dict]], by_id: bool) -> list[tuple[float, dict]]:
    """Each doc set's first request on a fresh app (after one plain request that pays the
    replica's one-time costs)."""
    from ray import serve

    from deployments.app import build

    serve.run(build(load_config(config)), name="bench-warmup", route_prefix="/bench")
    try:
        url = f"http://127.0.0.1:{port}/bench/v1/completions"
        base = {"model": "model", "prompt": QUESTION, "max_tokens": 2, "temperature": 0}  # the copy's name
        first_token_s(url, base)
        out = []
        for docs in doc_sets:
            refs = [{"id": d["id"]} if by_id else {"text": d["text"]} for d in docs]
            out.append(first_token_s(url, {**base, "documents": refs}))
        return out
    finally:
        serve.delete("bench-warmup")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=200, help="documents in the corpus")
    ap.add_argument("--runs", type=int, default=3, help="warm-up runs per worker count (median reported)")
    ap.add_argument("--requests", type=int, default=5, help="TTFT requests per case (median reported)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import ray
    from ray import serve

    source = load_config(None)
    with tempfile.TemporaryDirectory(prefix="bench-warmup-") as tmp_name:
        tmp = Path(tmp_name)
        model_dir = Path(shutil.copytree(resolve_model_dir(source.engine.model, source.engine.model_cache_dir),
                                         tmp / "model", ignore=shutil.ignore_patterns("epic-manifest.json")))
        corpus = tmp / "corpus.jsonl"
        docs = write_corpus(corpus, args.docs, args.seed)
        ray.init(num_cpus=4, object_store_memory=256 * 2**20, include_dashboard=False, log_to_driver=False)
        try:
            results = [measure_warmup(tmp, model_dir, corpus, w, args.runs) for w in (1, 2)]

            warm_store = tmp / "store-warm"
            warm_config = write_config(tmp, model_dir, warm_store)
            run_warmup(WarmupOptions(corpus=str(corpus), config=warm_config, workers=2, device="cpu",
                                     progress=False))
            port = free_port()
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            rng = random.Random(args.seed + 1)
            doc_sets = [rng.sample(docs, DOCS_PER_REQUEST) for _ in range(args.requests)]
            warm = measure_ttft(warm_config, port, doc_sets, by_id=True)
            cold = measure_ttft(write_config(tmp, model_dir, tmp / "store-cold"), port, doc_sets, by_id=False)
        finally:
            serve.shutdown()
            ray.shutdown()

    s = results[0]["summary"].counts
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; Ray {ray.__version__}")
    print(f"model: {source.engine.model} ({source.engine.dtype}, {source.engine.device}), "
          f"chunk_tokens {source.engine.chunk_tokens}")
    print(f"corpus: {args.docs} documents, {s.chunks} chunks, {s.tokens} tokens "
          f"({s.tokens / s.chunks:.0f} tokens/chunk)\n")
    print("warm-up from an empty store (median of runs; worker start excluded)")
    print("| workers | chunks/s | tokens/s | elapsed s | KV written MiB | worker start s | tokens/s per run |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        m = r["summary"]
        print(f"| {r['workers']} | {m.chunks_per_s:.1f} | {m.tokens_per_s:.0f} | {m.elapsed_s:.2f} | "
              f"{m.counts.bytes_written / 2**20:.1f} | {r['startup_s']:.1f} | {r['tokens_per_s']} |")
    speedup = results[1]["summary"].tokens_per_s / results[0]["summary"].tokens_per_s
    print(f"2 workers / 1 worker: {speedup:.2f}x\n")

    print(f"TTFT of the first request naming {DOCS_PER_REQUEST} documents (median of {args.requests} doc sets)")
    print("| case | TTFT ms | chunk hit tokens | compiled tokens |")
    print("|---|---|---|---|")
    for name, rows in (("after warm-up ({\"id\"}, stored chunks)", warm), ("no warm-up ({\"text\"}, compiled)", cold)):
        ttft = statistics.median(t for t, _ in rows) * 1000
        hits = statistics.median(u["cache"]["chunk_hit_tokens"] for _, u in rows)
        compiled = statistics.median(u["cache"]["compiled_tokens"] for _, u in rows)
        print(f"| {name} | {ttft:.1f} | {hits:.0f} | {compiled:.0f} |")
    ratio = statistics.median(t for t, _ in cold) / statistics.median(t for t, _ in warm)
    print(f"no warm-up / after warm-up: {ratio:.2f}x")


if __name__ == "__main__":
    main()
