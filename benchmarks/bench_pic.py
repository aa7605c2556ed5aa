"""Position-independent caching on this CPU: TTFT vs context per link policy, and accuracy vs
``full`` on a model with real trained weights. Side by side in one run.

    .venv/bin/python benchmarks/bench_pic.py ttft [--docs 2 4 8 16] [--runs 3]
    .venv/bin/python benchmarks/bench_pic.py accuracy [--prompts 200]

TTFT: N documents of 512 tokens, each request a new order of them plus a new question (the
long-document permutation workload); chunk KV already resident (compile cost reported apart).
Accuracy: stories260K (../shared/models, converted), multi-document prompts built from the
model's own sampled stories; for each policy, how often its greedy output equals ``full``'s and
the mean KL(full || policy) of the first generated token's distribution.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_report import machine_description, markdown_table
from random_llama import write_random_llama

from engine import Engine, EngineConfig, LinkPolicy, SamplingParams, Segment
from evals.policy_spec import parse_policy, split_policy_list

ROOT = Path(__file__).resolve().parents[1]
STORIES = ROOT.parent / "shared" / "models" / "stories260K" / "stories260K.bin"
OUT = ROOT / "benchmarks" / "out"

POLICIES = [LinkPolicy("full"), LinkPolicy("prefix"), LinkPolicy("naive"), LinkPolicy("legolink", k=2),
            LinkPolicy("legolink", k=16), LinkPolicy("legolink", k=32), LinkPolicy("cacheblend", ratio=0.15),
            LinkPolicy("naive", tail=0.15), LinkPolicy("naive", tail=0.25)]

# 8 layers, hidden 512, GQA: big enough that compute dominates on a CPU.
PIC_LLAMA = dict(
    vocab_size=8192, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
    num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=16384,
    rope_theta=10000.0, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True,
)


def ttft(args) -> None:
    if args.model:
        model = args.model
    else:
        model = str(write_random_llama(Path(tempfile.gettempdir()) / "epic-bench-pic-llama", PIC_LLAMA))
    rng = random.Random(0)
    max_docs = max(args.docs)
    engine = Engine(EngineConfig(model=model, dtype="float32", max_num_batched_tokens=16384,
                                 kv_cache_bytes=2 << 30, chunk_pool_bytes=2 << 30))
    s = engine.spec
    vocab = s.vocab_size
    docs = [[rng.randrange(3, vocab) for _ in range(512)] for _ in range(max_docs)]
    print(f"setup: {machine_description(torch.device('cpu'))}")
    print(f"model: {args.model or 'random Llama'}, {s.num_layers} layers, hidden {s.hidden_size}, "
          f"GQA {s.num_heads}/{s.num_kv_heads}, fp32; chunks of 512 tokens; "
          f"{args.runs} runs per cell (median); chunk KV resident")
    start = time.perf_counter()
    engine.compile_chunks(docs)
    compile_s = time.perf_counter() - start
    print(f"compile: {max_docs} chunks x 512 tokens in {compile_s:.2f} s ({max_docs * 512 / compile_s:.0f} tok/s), "
          "excluded from TTFT")
    policies = [LinkPolicy("full")] + [parse_policy(label) for label in split_policy_list(args.policies)
                                        if parse_policy(label) != LinkPolicy("full")] if args.policies else POLICIES
    table: dict[str, list[float]] = {p.label(): [] for p in policies}
    one = SamplingParams(max_tokens=1, temperature=0.0)
    for n in args.docs:
        for policy in policies:
            times = []
            for run in range(args.runs):
                order = rng.sample(range(max_docs), n)
                prompt = [Segment.prefix([1] + [rng.randrange(3, vocab) for _ in range(31)])]
                prompt += [Segment.chunk(docs[i]) for i in order]
                prompt.append(Segment.text([rng.randrange(3, vocab) for _ in range(32)]))
                out = engine.generate([prompt], one, link_policy=policy)[0]
                times.append(out.stats.ttft_s)
            table[policy.label()].append(statistics.median(times))
    headers = ["policy"] + [f"{n} docs ({n * 512 + 64} tok)" for n in args.docs]
    rows = [[label] + [f"{t * 1000:.0f} ms" for t in ts] for label, ts in table.items()]
    print(markdown_table(headers, rows))
    full = table["full"]
    for label, ts in table.items():
        if label != "full":
            print(f"TTFT full / {label}: " + ", ".join(f"{n} docs {f / t:.1f}x" for n, f, t in zip(args.docs, full, ts)))
    _plot(args.docs, table)


def _plot(docs: list[int], table: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, ts in table.items():
        ax.plot([n * 512 for n in docs], [t * 1000 for t in ts], marker="o", label=label)
    ax.set_xlabel("context tokens (512-token chunks)")
    ax.set_ylabel("TTFT (ms)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("TTFT vs context, chunk KV resident (CPU)")
    fig.tight_layout()
    fig.savefig(OUT / "pic_ttft_cpu.png", dpi=120)
    print(f"plot: {OUT / 'pic_ttft_cpu.png'}")


def accuracy(args) -> None:
    from training.llama2c import convert_llama2c

    if not STORIES.exists():
        raise SystemExit(f"{STORIES} is not present")
    path = convert_llama2c(STORIES, Path(tempfile.mkdtemp(prefix="stories260k-")))
    engine = Engine(EngineConfig(model=str(path), dtype="float32", kv_cache_bytes=256 << 20))
    vocab = engine.spec.vocab_size
    # Documents: the model's own sampled stories (fluent text it has a distribution over).
    story = SamplingParams(max_tokens=90, temperature=1.0, ignore_eos=True)
    pool = [o.token_ids[: random.Random(i).randrange(50, 90)]
            for i, o in enumerate(engine.generate([[1]] * 60, [SamplingParams(**{**story.__dict__, "seed": s})
                                                                 for s in range(60)]))]
    rng = random.Random(1)
    prompts = []
    for _ in range(args.prompts):
        docs = rng.sample(pool, rng.randrange(2, 5))
        question = rng.choice(pool)[:12]
        prompts.append([Segment.prefix([1]), *[Segment.chunk(d) for d in docs], Segment.text(question)])
    params = SamplingParams(max_tokens=16, temperature=0.0, ignore_eos=True, top_logprobs=vocab)
    policies = [LinkPolicy("full"), LinkPolicy("naive"), LinkPolicy("legolink", k=2), LinkPolicy("legolink", k=16),
                LinkPolicy("cacheblend", ratio=0.15)]
    results = {p.label(): engine.generate(prompts, params, link_policy=p) for p in policies}
    full = results["full"]
    rows = []
    for label, outs in results.items():
        same = sum(o.token_ids == f.token_ids for o, f in zip(outs, full)) / len(full)
        first = sum(o.token_ids[0] == f.token_ids[0] for o, f in zip(outs, full)) / len(full)
        kl = statistics.mean(_kl(f.top_logprobs[0], o.top_logprobs[0]) for o, f in zip(outs, full))
        recompute = statistics.mean(o.stats.recomputed_tokens / o.stats.prompt_tokens for o in outs)
        rows.append([label, f"{same:.1%}", f"{first:.1%}", f"{kl:.4f}", f"{recompute:.0%}"])
    print(f"setup: {machine_description(torch.device('cpu'))}")
    print(f"model: stories260K (pretrained, 512-token context); {len(prompts)} prompts of BOS + 2-4 sampled "
          f"stories (50-90 tokens each) as chunks + 12 question tokens; greedy, 16 tokens")
    print(markdown_table(["policy", "output == full", "first token == full", "mean KL(full||policy) first token",
                          "recomputed / prompt"], rows))


def _kl(p: dict[int, float], q: dict[int, float]) -> float:
    return sum(math.exp(lp) * (lp - q[t]) for t, lp in p.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("ttft")
    t.add_argument("--docs", type=int, nargs="+", default=[2, 4, 8, 16])
    t.add_argument("--runs", type=int, default=3)
    t.add_argument("--model", default="", help="a model the engine loads (default: a random 8-layer Llama)")
    t.add_argument("--policies", default="", help="comma-separated policy labels (evals.policy_spec), full first "
                                                  "(default: the nine policies of POLICIES)")
    a = sub.add_parser("accuracy")
    a.add_argument("--prompts", type=int, default=200)
    args = ap.parse_args()
    {"ttft": ttft, "accuracy": accuracy}[args.cmd](args)


if __name__ == "__main__":
    main()
