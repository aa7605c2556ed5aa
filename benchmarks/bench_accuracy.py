"""Accuracy of link policies against ``full`` on multi-document QA, side by side in one run.

    .venv/bin/python benchmarks/bench_accuracy.py --seeds 1,2,3 --n 20 --docs 4-8 --doc-tokens 250 \\
        --policies full,naive,legolink:k=16,cacheblend:ratio=0.15 --ttft-n 4

Workload: :mod:`evals.rag_workload` (held-out entities, facts among filler, a random document
order per request, single- and two-hop questions). Prompts are built by
``deployments.prompting.PromptBuilder`` as the server builds a chat request with documents
(the model's chat template; each document KVSplit into chunks); a model without a chat
template gets a completion prompt ``Question: ...\\nAnswer:`` behind the documents.

Per policy, over the same prompts, greedy:

- accuracy: the normalized gold answer occurs in the normalized output (also per hop kind);
- == full: the generated token ids equal ``full``'s;
- KL: mean KL(full || policy) of the first generated token, truncated to full's top-N
  (``--top-logprobs``) plus one bucket for the rest (:func:`evals.scoring.truncated_kl`);
- recomputed: mean of stats.recomputed_tokens / stats.prompt_tokens;
- TTFT: median over ``--ttft-n`` prompts per seed, each run alone.

Every policy starts from the same cache state: all chunks of the seed's prompts compiled once
and resident (that compile is reported apart, and a chunk compiled again inside a policy's
batch is counted in its row), and the prefix cache holding the template head only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if not __package__:  # run as a script: the repository root, for ``benchmarks.*``
    sys.path.insert(0, str(ROOT))

from benchmarks.accuracy_report import family_of, plot_accuracy, policy_table, seed_table  # noqa: E402
from benchmarks.bench_report import machine_description  # noqa: E402

from deployments.prompting import PromptBuilder  # noqa: E402
from engine import Engine, EngineConfig, LinkPolicy, SamplingParams, Segment  # noqa: E402
from deployments.document_order import DOCUMENT_ORDERS  # noqa: E402
from engine.policy_label import canonical_label, parse_policy, split_policy_list  # noqa: E402
from evals.rag_workload import RagExample, WorkloadSpec, generate  # noqa: E402
from evals.scoring import answer_correct, truncated_kl  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
FULL = "full"
AS_GIVEN = "as_given"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct",
                   help="a packaged model, a directory under models/ (epic-tiny), a model directory or a .gguf")
    p.add_argument("--model-cache-dir", default="", help="where GGUF models are kept dequantized")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated workload seeds")
    p.add_argument("--n", type=int, default=20, help="prompts per seed")
    p.add_argument("--docs", default="4-8", help="documents per prompt: a range LOW-HIGH or one count")
    p.add_argument("--doc-tokens", type=int, default=250, help="tokens per document (100-500)")
    p.add_argument("--two-hop-fraction", type=float, default=0.3)
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--top-logprobs", type=int, default=64, help="N of the truncated first-token KL")
    p.add_argument("--policies", default="full,naive,legolink:k=2,legolink:k=16,legolink:k=32,legolink:k=64,"
                                         "cacheblend:ratio=0.15,cacheblend:ratio=0.5",
                   help="comma-separated labels name[:field=value,...][@order]; full is added when missing; "
                        "@order links the documents in a document_order (as_given, retrieval, lexical)")
    p.add_argument("--ttft-n", type=int, default=4, help="prompts per seed timed alone per policy")
    p.add_argument("--kv-gib", type=float, default=1.0, help="paged KV pool")
    p.add_argument("--chunk-pool-gib", type=float, default=2.0, help="resident chunk KV (must hold a seed's chunks)")
    p.add_argument("--out", type=Path, default=OUT / "bench_accuracy.json")
    p.add_argument("--plot", type=Path, default=OUT / "bench_accuracy.png")
    args = p.parse_args(argv)
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",")]
        low, _, high = args.docs.partition("-")
        args.doc_range = (int(low), int(high or low))
        args.policy_list = policies_of(args.policies)
    except ValueError as e:
        p.error(str(e))
    if args.n < 1 or args.ttft_n < 0 or args.ttft_n > args.n:
        p.error("--n must be >= 1 and --ttft-n in [0, n]")
    return args


def policies_of(text: str) -> list[tuple[str, LinkPolicy, str]]:
    """(label, policy, document order) in the order given, ``full`` in the client's order first
    (the reference of every comparison)."""
    out: list[tuple[str, LinkPolicy, str]] = []
    for label in split_policy_list(text):
        spec, _, order = label.partition("@")
        order = order or AS_GIVEN
        if order not in DOCUMENT_ORDERS:
            raise ValueError(f"unknown document order {order!r} in {label!r}; valid: {', '.join(DOCUMENT_ORDERS)}")
        policy = parse_policy(spec)
        if any(policy == q and order == o for _, q, o in out):
            raise ValueError(f"link policy {label!r} is listed twice")
        name = canonical_label(spec) + ("" if order == AS_GIVEN else f"@{order}")
        out.append((name, policy, order))
    ref = [item for item in out if item[1] == LinkPolicy(FULL) and item[2] == AS_GIVEN]
    return (ref or [(FULL, LinkPolicy(FULL), AS_GIVEN)]) + [item for item in out if item not in ref]


def resolve_model(name: str) -> str:
    local = ROOT / "models" / name
    return str(local) if local.is_dir() else name


def build_prompt(builder: PromptBuilder, ex: RagExample, order: str = "as_given") -> list[Segment]:
    docs = builder.ordered([builder.chunk_document(d) for d in ex.documents], order, ex.question)
    if builder.has_chat_template:
        layout = builder.chat([{"role": "user", "content": ex.question}], docs)
    else:
        layout = builder.completion(f"Question: {ex.question}\nAnswer:", docs)
    return list(layout.segments)


def reset_prefix_cache(engine: Engine, head: list[Segment]) -> None:
    """Leave only the template head in the prefix cache.

    ``full`` and ``prefix`` publish whole prompts as prefix blocks, so without this a later
    policy would find the same prompts cached. Taking every free block out of the pool drops
    their hashes; one request of the head alone caches it again.
    """
    pool = engine.block_pool
    assert pool.num_free == pool.num_blocks, "no request may hold KV blocks between policies"
    pool.free(pool.allocate(pool.num_free))
    if head:
        engine.generate([head], SamplingParams(max_tokens=1, temperature=0.0), link_policy=LinkPolicy("prefix"))


def run_seed(engine: Engine, builder: PromptBuilder, args, seed: int) -> dict:
    """Every policy over one seed's prompts: per-prompt records, TTFTs and compile cost."""
    tok = engine.tokenizer
    spec = WorkloadSpec(seed, args.n, *args.doc_range, args.doc_tokens, args.two_hop_fraction)
    examples = generate(spec, lambda text: len(tok.encode(text, add_special_tokens=False)))
    orders = dict.fromkeys(order for _, _, order in args.policy_list)
    prompts_in = {order: [build_prompt(builder, ex, order) for ex in examples] for order in orders}
    prompts = prompts_in[AS_GIVEN]
    chunks = list(dict.fromkeys(s.token_ids for p in prompts for s in p if s.kind == "chunk"))
    start = time.perf_counter()
    keys = engine.compile_chunks(chunks)
    compile_s = time.perf_counter() - start
    print(f"seed {seed}: {len(prompts)} prompts, compiled {len(chunks)} chunks in {compile_s:.1f} s", flush=True)
    if not all(k in engine.chunk_pool for k in keys):
        s = engine.spec
        need = sum(map(len, chunks)) * s.num_layers * 2 * s.num_kv_heads * s.head_dim * engine.dtype.itemsize
        raise SystemExit(f"seed {seed}: {len(chunks)} chunks need {need / 2**30:.2f} GiB of resident chunk KV; "
                         "raise --chunk-pool-gib")
    first = prompts[0]
    head = [first[0], Segment.text(first[-1].token_ids[:1])] if first[0].kind == "prefix" else []
    sampling = SamplingParams(max_tokens=args.max_tokens, temperature=0.0, top_logprobs=args.top_logprobs)
    one = SamplingParams(max_tokens=1, temperature=0.0)
    outputs, ttft, batch_s = {}, {}, {}
    for label, policy, order in args.policy_list:
        reset_prefix_cache(engine, head)
        start = time.perf_counter()
        outputs[label] = engine.generate(prompts_in[order], sampling, link_policy=policy)
        batch_s[label] = time.perf_counter() - start
        reset_prefix_cache(engine, head)
        ttft[label] = [engine.generate([p], one, link_policy=policy)[0].stats.ttft_s
                       for p in prompts_in[order][: args.ttft_n]]
        print(f"seed {seed}: {label}: batch {batch_s[label]:.1f} s", flush=True)
    records = []
    for i, ex in enumerate(examples):
        ref = outputs[FULL][i]
        rows = {}
        for label, _, _ in args.policy_list:
            out = outputs[label][i]
            rows[label] = {
                "text": out.text,
                "correct": answer_correct(out.text, ex.answer),
                "same_as_full": out.token_ids == ref.token_ids,
                "kl_first_token": truncated_kl(ref.top_logprobs[0], out.top_logprobs[0]),
                "recomputed_fraction": out.stats.recomputed_tokens / out.stats.prompt_tokens,
                "compiled_tokens": out.stats.compiled_tokens,
            }
        records.append({"seed": seed, "index": i, "question": ex.question, "answer": ex.answer, "kind": ex.kind,
                        "num_documents": len(ex.documents), "answer_documents": list(ex.answer_documents),
                        "prompt_tokens": ref.stats.prompt_tokens, "outputs": rows})
    doc_tokens = [len(tok.encode(d, add_special_tokens=False)) for ex in examples for d in ex.documents]
    return {"records": records, "ttft_s": ttft, "batch_s": batch_s, "compile_s": compile_s,
            "compiled_tokens": sum(len(c) for c in chunks), "num_chunks": len(chunks),
            "mean_doc_tokens": statistics.mean(doc_tokens)}


def summarize(labels: list[str], seeds: dict[int, dict]) -> dict[str, dict]:
    """Per policy: means over all prompts (seeds have equal sizes), accuracy per seed and hop
    kind, TTFT median over every timed prompt, and the speedup of that median over full's."""
    records = [r for s in seeds.values() for r in s["records"]]
    out = {}
    for label in labels:
        rows = [r["outputs"][label] for r in records]
        kinds = sorted({r["kind"] for r in records})
        ttfts = [t for s in seeds.values() for t in s["ttft_s"][label]]
        out[label] = {
            "accuracy": statistics.mean(x["correct"] for x in rows),
            "accuracy_by_kind": {k: statistics.mean(r["outputs"][label]["correct"] for r in records if r["kind"] == k)
                                 for k in kinds},
            "accuracy_per_seed": {seed: statistics.mean(r["outputs"][label]["correct"] for r in s["records"])
                                  for seed, s in seeds.items()},
            "same_as_full": statistics.mean(x["same_as_full"] for x in rows),
            "kl_first_token": statistics.mean(x["kl_first_token"] for x in rows),
            "recomputed_fraction": statistics.mean(x["recomputed_fraction"] for x in rows),
            "batch_compiled_tokens": sum(x["compiled_tokens"] for x in rows),
            "batch_s": sum(s["batch_s"][label] for s in seeds.values()),
            "ttft_s": statistics.median(ttfts) if ttfts else None,
            "ttft_runs_s": ttfts,
        }
    full_ttft = out[FULL]["ttft_s"]
    for row in out.values():
        row["ttft_speedup_vs_full"] = full_ttft / row["ttft_s"] if row["ttft_s"] and full_ttft else None
    return out


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; after each seed, print the setup and table and save JSON and the plot."""
    args = parse_args(argv)
    wall = time.perf_counter()
    engine = Engine(EngineConfig(model=resolve_model(args.model), model_cache_dir=args.model_cache_dir,
                                 device=args.device, dtype=args.dtype, kv_cache_bytes=int(args.kv_gib * 2**30),
                                 chunk_pool_bytes=int(args.chunk_pool_gib * 2**30)))
    if engine.tokenizer is None:
        raise SystemExit(f"{args.model} has no tokenizer: this benchmark asks questions in text")
    builder = PromptBuilder(engine.tokenizer, engine.model_fingerprint, engine.config.chunk_tokens)
    seeds: dict[int, dict] = {}
    for seed in args.seed_list:  # the results so far are printed and saved after every seed
        seeds[seed] = run_seed(engine, builder, args, seed)
        results = report(args, engine, builder, seeds, wall)
    return results


def report(args, engine: Engine, builder: PromptBuilder, seeds: dict[int, dict], wall: float) -> dict:
    """Print the setup and table of the seeds run so far; save JSON and the plot; return the results."""
    import json

    labels = [label for label, _, _ in args.policy_list]
    records = [r for s in seeds.values() for r in s["records"]]
    s = engine.spec
    setup = {
        "machine": machine_description(torch.device(args.device)),
        "model": args.model, "fingerprint": engine.model_fingerprint,
        "model_shape": f"{s.model_type}, {s.num_layers} layers, hidden {s.hidden_size}, heads {s.num_heads}/"
                       f"{s.num_kv_heads}, vocab {s.vocab_size}, {args.dtype} on {args.device}",
        "prompt_format": "chat template" if builder.has_chat_template else "completion (no chat template)",
        "seeds": list(seeds), "n_per_seed": args.n, "docs": list(args.doc_range),
        "doc_tokens_target": args.doc_tokens,
        "doc_tokens_mean": statistics.mean(x["mean_doc_tokens"] for x in seeds.values()),
        "prompt_tokens": {"mean": statistics.mean(r["prompt_tokens"] for r in records),
                          "min": min(r["prompt_tokens"] for r in records),
                          "max": max(r["prompt_tokens"] for r in records)},
        "two_hop": f"{sum(r['kind'] == 'two_hop' for r in records)} of {len(records)} "
                   f"(fraction {args.two_hop_fraction})",
        "max_tokens": args.max_tokens, "top_logprobs": args.top_logprobs, "ttft_n_per_seed": args.ttft_n,
        "cold_compile": {seed: {"chunks": x["num_chunks"], "tokens": x["compiled_tokens"],
                                "seconds": round(x["compile_s"], 2)} for seed, x in seeds.items()},
    }
    summary = summarize(labels, seeds)
    setup["wall_s"] = round(time.perf_counter() - wall, 1)
    print("setup:")
    for key, value in setup.items():
        print(f"  {key}: {value}")
    print(policy_table(summary))
    print(seed_table(summary, list(seeds)))
    results = {"setup": setup, "policies": summary, "prompts": records}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"json: {args.out}")
    families = {label: family_of(policy, order) for label, policy, order in args.policy_list}
    if args.plot and plot_accuracy(args.plot, summary, families,
                                   f"{args.model}: {len(records)} prompts, {args.doc_range[0]}-{args.doc_range[1]} "
                                   f"docs x ~{args.doc_tokens} tokens"):
        print(f"plot: {args.plot}")
    return results


if __name__ == "__main__":
    main()
