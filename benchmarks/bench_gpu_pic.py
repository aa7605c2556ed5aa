"""Position-independent caching on a GPU: the paper's TTFT and throughput comparisons.

A Llama-3.1-8B-shaped model with random bfloat16 weights (speed does not depend on the
values), FlashInfer attention, chunk KV resident on the GPU, 512-token chunks. Three parts:

  ttft     TTFT of one request vs context length (1k..32k tokens), for full, cacheblend-15
           and legolink-16 (EPIC's Figure 9). Prompt: 32-token prefix, context/512 chunks,
           32-token question (fresh for every run, so only the chunks and the prefix are reused).
  poisson  A multi-user workload: Poisson arrivals at several request rates; each request links
           8 chunks drawn from a resident 48-chunk corpus (98% of the prompt is cached chunks)
           and decodes 32 tokens. Throughput (requests/s, output tokens/s) and TTFT (from the
           scheduled arrival) per policy and rate.
  decode   Decode tokens/s at batch 1/16/64 (1024-token prompts, 64 decode steps timed once
           every request has its first token) vs the bandwidth limit: measured HBM copy
           bandwidth / (weight bytes + KV bytes read per step).

Prints each table, saves plots under --out, and writes the numbers with the GPU, date and
commit into benchmarks/RESULTS.md. ``--smoke`` runs everything on a tiny model with the torch
backend on CPU (checks the script end to end; nothing is written to RESULTS.md unless asked).

    python benchmarks/bench_gpu_pic.py                  # all parts, CUDA, flashinfer
    python benchmarks/bench_gpu_pic.py --parts ttft     # one part (each fits a 10-minute slot)
    python benchmarks/bench_gpu_pic.py --smoke
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

if not __package__:  # run as a script: the repository root, for ``benchmarks.*``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_gpu_pic_report import section  # noqa: E402
from benchmarks.bench_report import machine_description, update_results  # noqa: E402
from benchmarks.random_llama import (  # noqa: E402
    LLAMA_3_1_8B,
    TINY_LLAMA,
    kv_bytes_per_token,
    parameter_bytes_per_decode_step,
    write_random_llama,
)

from engine import Engine, EngineConfig, LinkPolicy, SamplingParams, Segment  # noqa: E402

PARTS = ("ttft", "poisson", "decode")
POLICIES = {p.label(): p for p in (LinkPolicy("full"), LinkPolicy("cacheblend", ratio=0.15), LinkPolicy("legolink", k=16))}
GiB = 2**30


@dataclass(frozen=True)
class Setup:
    """Everything a run depends on (printed with the results)."""

    model: dict
    device: str
    dtype: str
    backend: str
    chunk_tokens: int = 512
    prefix_tokens: int = 32
    question_tokens: int = 32
    contexts: tuple[int, ...] = (1024, 2048, 4096, 8192, 16384, 32768)
    repeats: int = 3
    rates: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    requests_per_rate: int = 32
    chunks_per_request: int = 8
    corpus_chunks: int = 48
    output_tokens: int = 32
    decode_batches: tuple[int, ...] = (1, 16, 64)
    decode_context: int = 1024
    decode_tokens: int = 64
    kv_cache_bytes: int = 24 * GiB
    chunk_pool_bytes: int = 12 * GiB
    max_num_batched_tokens: int = 8192
    max_num_seqs: int = 64
    seed: int = 0


GPU_SETUP = Setup(model=LLAMA_3_1_8B, device="cuda", dtype="bfloat16", backend="flashinfer")
SMOKE_SETUP = replace(
    GPU_SETUP, model=TINY_LLAMA, device="cpu", dtype="float32", backend="torch", chunk_tokens=64,
    prefix_tokens=8, question_tokens=8, contexts=(128, 256), repeats=1, rates=(4.0, 16.0),
    requests_per_rate=4, chunks_per_request=2, corpus_chunks=6, output_tokens=4, decode_batches=(1, 4),
    decode_context=64, decode_tokens=8, kv_cache_bytes=64 * 2**20, chunk_pool_bytes=64 * 2**20,
    max_num_batched_tokens=1024, max_num_seqs=16,
)


class Tokens:
    """Seeded random token ids from the model's vocabulary (avoiding the special ids 0..2)."""

    def __init__(self, vocab_size: int, seed: int):
        self.vocab_size, self.rng = vocab_size, random.Random(seed)

    def __call__(self, n: int) -> list[int]:
        return [self.rng.randrange(3, min(self.vocab_size, 128000)) for _ in range(n)]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---- part 1: TTFT vs context length -----------------------------------------------------------


def bench_ttft(engine: Engine, s: Setup, tokens: Tokens) -> dict[str, dict[int, dict]]:
    """{policy: {context: {"ttft_s", "cached", "recomputed"}}}, medians over s.repeats runs."""
    chunks = [tokens(s.chunk_tokens) for _ in range(max(s.contexts) // s.chunk_tokens)]
    engine.compile_chunks(chunks)
    prefix = tokens(s.prefix_tokens)
    greedy = SamplingParams(max_tokens=1, temperature=0.0, ignore_eos=True)
    results: dict[str, dict[int, dict]] = {}
    for name, policy in POLICIES.items():
        for context in s.contexts:
            n = context // s.chunk_tokens
            runs = []
            for _ in range(1 + s.repeats):  # the first run warms up
                prompt = [Segment.prefix(prefix), *map(Segment.chunk, chunks[:n]), Segment.text(tokens(s.question_tokens))]
                runs.append(engine.generate([prompt], greedy, link_policy=policy)[0].stats)
            runs = runs[1:]
            results.setdefault(name, {})[context] = {
                "ttft_s": statistics.median(r.ttft_s for r in runs),
                "cached": runs[-1].cached_tokens,
                "recomputed": runs[-1].recomputed_tokens,
            }
            print(f"ttft {name:>14} {context:>6} tokens: {results[name][context]['ttft_s'] * 1e3:9.1f} ms", flush=True)
    return results


# ---- part 2: Poisson multi-user workload --------------------------------------------------------


def run_poisson(engine: Engine, s: Setup, policy: LinkPolicy, rate: float, corpus, prefix, tokens: Tokens) -> dict:
    """Replay one Poisson arrival trace through the engine's step loop; TTFT from scheduled arrival."""
    rng = random.Random(s.seed * 1000 + int(rate * 100))
    t, trace = 0.0, []
    for _ in range(s.requests_per_rate):
        t += rng.expovariate(rate)
        docs = rng.sample(corpus, s.chunks_per_request)
        trace.append((t, [Segment.prefix(prefix), *map(Segment.chunk, docs), Segment.text(tokens(s.question_tokens))]))
    sampling = SamplingParams(max_tokens=s.output_tokens, temperature=0.0, ignore_eos=True)
    arrival, first, done = {}, {}, {}
    start = time.perf_counter()
    while trace or engine.has_unfinished():
        now = time.perf_counter() - start
        while trace and trace[0][0] <= now:
            at, prompt = trace.pop(0)
            arrival[engine.add_request(prompt, sampling, policy)] = at
        if not engine.has_unfinished():
            time.sleep(max(0.0, min(trace[0][0] - now, 0.005)))
            continue
        outputs = engine.step()
        now = time.perf_counter() - start
        for out in outputs:
            first.setdefault(out.request_id, now)
            if out.finished:
                done[out.request_id] = now
    ttfts = sorted(first[r] - arrival[r] for r in arrival)
    makespan = max(done.values()) - min(arrival.values())
    return {
        "throughput_rps": len(done) / makespan,
        "output_tps": len(done) * s.output_tokens / makespan,
        "ttft_mean_s": statistics.fmean(ttfts),
        "ttft_p50_s": statistics.median(ttfts),
        "ttft_p90_s": ttfts[min(len(ttfts) - 1, int(0.9 * len(ttfts)))],
    }


def bench_poisson(engine: Engine, s: Setup, tokens: Tokens) -> dict[str, dict[float, dict]]:
    corpus = [tokens(s.chunk_tokens) for _ in range(s.corpus_chunks)]
    engine.compile_chunks(corpus)
    prefix = tokens(s.prefix_tokens)
    results: dict[str, dict[float, dict]] = {}
    for name, policy in POLICIES.items():
        for rate in s.rates:
            r = run_poisson(engine, s, policy, rate, corpus, prefix, tokens)
            results.setdefault(name, {})[rate] = r
            print(f"poisson {name:>14} {rate:5.1f} req/s: {r['throughput_rps']:.2f} req/s done, "
                  f"TTFT mean {r['ttft_mean_s'] * 1e3:.0f} ms p90 {r['ttft_p90_s'] * 1e3:.0f} ms", flush=True)
    return results


# ---- part 3: decode speed vs the bandwidth limit ----------------------------------------------------


def copy_bandwidth(device: str, nbytes: int) -> float:
    """Bytes/s of a device-to-device copy (read + write counted), best of 10."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(11):
        sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * nbytes / best


def time_decode(engine: Engine, prompts: list[list[int]], new_tokens: int) -> tuple[int, float]:
    """Run prompts together; (steps, seconds) of the steps that decode the whole batch (after
    every prompt is prefilled, before any request finishes). A step returns after its sampled
    tokens reach the host, so its wall time covers its device work."""
    sampling = SamplingParams(max_tokens=new_tokens + 1, temperature=0.0, ignore_eos=True)
    ids = {engine.add_request(p, sampling, LinkPolicy("full")) for p in prompts}
    started: set[str] = set()
    steps, seconds = 0, 0.0
    while engine.has_unfinished():
        t0 = time.perf_counter()
        outputs = engine.step()
        elapsed = time.perf_counter() - t0
        if started == ids and len(outputs) == len(ids):
            steps, seconds = steps + 1, seconds + elapsed
        started |= {o.request_id for o in outputs}
    return steps, seconds


def bench_decode(engine: Engine, s: Setup, tokens: Tokens) -> dict[int, dict]:
    bandwidth = copy_bandwidth(s.device, 2 * GiB if s.device.startswith("cuda") else 256 * 2**20)
    dtype_bytes = torch.finfo(getattr(torch, s.dtype)).bits // 8
    weights = parameter_bytes_per_decode_step(s.model, dtype_bytes)
    per_token_kv = kv_bytes_per_token(s.model, dtype_bytes)
    results = {}
    for batch in s.decode_batches:
        time_decode(engine, [tokens(s.decode_context) for _ in range(batch)], 4)  # warm-up
        steps, seconds = time_decode(engine, [tokens(s.decode_context) for _ in range(batch)], s.decode_tokens)
        assert steps > 0, "no step decoded the whole batch: raise decode_tokens"
        tps = batch * steps / seconds
        mean_context = s.decode_context + 1 + s.decode_tokens / 2
        step_bytes = weights + batch * mean_context * per_token_kv
        limit = batch * bandwidth / step_bytes
        results[batch] = {"steps": steps, "tokens_per_s": tps, "limit_tokens_per_s": limit, "fraction": tps / limit,
                          "step_bytes": step_bytes, "bandwidth": bandwidth}
        print(f"decode batch {batch:>3}: {tps:9.1f} tok/s, limit {limit:9.1f} ({tps / limit:.0%})", flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny model, torch backend, CPU")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    ap.add_argument("--model-dir", type=Path, help="where the random checkpoint is written (reused when identical)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "plots", help="plot directory")
    ap.add_argument("--results", type=Path, help="markdown file to update (default: benchmarks/RESULTS.md, "
                    "not written in --smoke mode unless given)")
    ap.add_argument("--backend", help="attention backend (default: flashinfer, torch with --smoke)")
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        ap.error(f"--parts takes a comma-separated subset of {', '.join(PARTS)}; got {args.parts!r}")
    s = SMOKE_SETUP if args.smoke else GPU_SETUP
    if args.backend:
        s = replace(s, backend=args.backend)
    if s.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("CUDA is not available: run on a GPU machine, or use --smoke")
    results_path = args.results or (None if args.smoke else Path(__file__).parent / "RESULTS.md")
    default_dir = "epic-bench-tiny-llama" if args.smoke else "epic-bench-llama-3.1-8b-random"
    model_dir = args.model_dir or Path(tempfile.gettempdir()) / default_dir

    run_benchmark(s, parts, model_dir, args.out, results_path, args.smoke)


def run_benchmark(s: Setup, parts: list[str], model_dir: Path, out_dir: Path, results_path: Path | None,
                  smoke: bool) -> dict:
    """Build (or reuse) the model, run the parts, report; returns {part: results}."""
    machine = machine_description(torch.device(s.device))
    print(f"setup: {s}\nmachine: {machine}", flush=True)
    t0 = time.perf_counter()
    write_random_llama(model_dir, s.model, seed=s.seed, device=s.device)
    print(f"model at {model_dir} ({time.perf_counter() - t0:.0f} s)", flush=True)
    engine = Engine(EngineConfig(
        model=str(model_dir), device=s.device, dtype=s.dtype, backend=s.backend, block_size=16,
        kv_cache_bytes=s.kv_cache_bytes, chunk_pool_bytes=s.chunk_pool_bytes,
        max_num_batched_tokens=s.max_num_batched_tokens, max_num_seqs=s.max_num_seqs,
        chunk_tokens=s.chunk_tokens, skip_tokenizer_init=True, seed=s.seed,
    ))
    tokens = Tokens(s.model["vocab_size"], s.seed)
    benches = {"ttft": bench_ttft, "poisson": bench_poisson, "decode": bench_decode}
    results = {part: benches[part](engine, s, tokens) for part in parts}
    for part, part_results in results.items():
        text = section(part, s, machine, part_results, out_dir, smoke)
        print("\n" + text + "\n")
        if results_path is not None:
            update_results(results_path, f"bench_gpu_pic{'_smoke' if smoke else ''}:{part}", text)
    if results_path is not None:
        print(f"wrote {results_path}")
    return results


if __name__ == "__main__":
    main()
