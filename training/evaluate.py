"""Measure epic-tiny: full-prefill accuracy, attention sinks, and accuracy per link policy.

    python -m training.data --seed 1 --n 500 --out heldout.jsonl
    python -m training.evaluate --model models/epic-tiny --data heldout.jsonl \\
        --policies full,naive,legolink-16,cacheblend-15 --out measurements.json

Accuracy is exact match of the greedy answer (whitespace-stripped). ``full_prefill`` runs
plain transformers generation; ``--policies`` runs the same prompts through
``engine.Engine`` (prefix, one chunk per document, question text). Sink statistics are
defined in :mod:`training.attention_sinks`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from engine.segments import LINK_POLICY_NAMES, LinkPolicy
from training.attention_sinks import sink_stats
from training.data import Example, read_jsonl
from training.prompt import build_prompt
from training.qa import MAX_ANSWER_TOKENS, answer, normalize


def parse_policy(label: str) -> LinkPolicy:
    """``full``, ``naive``, ``prefix``, ``legolink-K`` or ``cacheblend-PCT`` -> LinkPolicy."""
    name, _, arg = label.partition("-")
    if name not in LINK_POLICY_NAMES:
        raise ValueError(f"unknown link policy {label!r}; valid: {', '.join(LINK_POLICY_NAMES)}")
    if name == "legolink" and arg:
        return LinkPolicy("legolink", k=int(arg))
    if name == "cacheblend" and arg:
        return LinkPolicy("cacheblend", ratio=int(arg) / 100)
    if arg:
        raise ValueError(f"link policy {name!r} takes no argument, got {label!r}")
    return LinkPolicy(name)


def full_prefill_accuracy(model, tokenizer, examples: list[Example]) -> dict:
    hits: dict[str, list[bool]] = {}
    start = time.perf_counter()
    for ex in examples:
        ok = normalize(answer(model, tokenizer, ex)) == normalize(ex.answer)
        for key in ("all", ex.kind):
            hits.setdefault(key, []).append(ok)
    seconds = time.perf_counter() - start
    return {"accuracy": {k: sum(v) / len(v) for k, v in sorted(hits.items())},
            "n": len(examples), "seconds_per_question": seconds / len(examples)}


def engine_accuracy(model_dir: Path, tokenizer, examples: list[Example], policies: list[LinkPolicy]) -> dict:
    """Accuracy and mean recompute per link policy through ``engine.Engine`` (CPU, fp32)."""
    from engine import Engine
    from engine.config import EngineConfig
    from engine.sampling_params import SamplingParams

    engine = Engine(EngineConfig(model=str(model_dir), device="cpu", dtype="float32"))
    prompts = [build_prompt(tokenizer, ex.documents, ex.question).segments() for ex in examples]
    sampling = SamplingParams(max_tokens=MAX_ANSWER_TOKENS, temperature=0.0)
    results = {}
    for policy in policies:
        start = time.perf_counter()
        outputs = engine.generate(prompts, sampling, link_policy=policy)
        seconds = time.perf_counter() - start
        hits: dict[str, list[bool]] = {}
        for ex, out in zip(examples, outputs):
            got = tokenizer.decode(out.token_ids, skip_special_tokens=True)
            for key in ("all", ex.kind):
                hits.setdefault(key, []).append(normalize(got) == normalize(ex.answer))
        results[policy.label()] = {
            "accuracy": {k: sum(v) / len(v) for k, v in sorted(hits.items())},
            "mean_recomputed_tokens": sum(o.stats.recomputed_tokens for o in outputs) / len(outputs),
            "mean_prompt_tokens": sum(o.stats.prompt_tokens for o in outputs) / len(outputs),
            "seconds": seconds,
        }
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=Path("models/epic-tiny"))
    p.add_argument("--data", type=Path, required=True, help="JSONL from training.data")
    p.add_argument("--sink-n", type=int, default=100, help="prompts for the sink statistics")
    p.add_argument("--policies", default="", help="comma-separated, e.g. full,naive,legolink-16,cacheblend-15")
    p.add_argument("--skip-full", action="store_true", help="skip the transformers accuracy pass")
    p.add_argument("--out", type=Path, help="write the measurements as JSON")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    policies = [parse_policy(s) for s in args.policies.split(",") if s]

    torch.set_num_threads(args.threads)
    examples = read_jsonl(args.data)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    results: dict = {"model": str(args.model), "data": str(args.data), "n": len(examples),
                     "machine": platform.processor() or platform.machine(),
                     "threads": torch.get_num_threads(), "torch": torch.__version__}
    if not args.skip_full:
        start = time.perf_counter()
        model = LlamaForCausalLM.from_pretrained(args.model).eval()
        results["load_seconds"] = time.perf_counter() - start
        results["full_prefill"] = full_prefill_accuracy(model, tokenizer, examples)
        print(json.dumps(results["full_prefill"]), flush=True)
    if args.sink_n > 0:
        eager = LlamaForCausalLM.from_pretrained(args.model, attn_implementation="eager").eval()
        results["attention_sinks"] = asdict(sink_stats(eager, tokenizer, examples[: args.sink_n]))
        print(json.dumps(results["attention_sinks"]), flush=True)
    if policies:
        results["policies"] = engine_accuracy(args.model, tokenizer, examples, policies)
        print(json.dumps(results["policies"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
