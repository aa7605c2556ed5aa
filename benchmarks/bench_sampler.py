"""The batched sampler against the per-row reference (one request at a time, as a sampler with a
Python loop over requests works), on one step's logits: median milliseconds per step, side by side.

    .venv/bin/python benchmarks/bench_sampler.py [--runs 7] [--vocab 49152] [--rows 8 64]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from bench_report import machine_description, markdown_table

from engine.sampler import SampleRow, sample
from evals.sampler_reference import reference_filter, reference_process
from engine.sampling_params import SamplingParams


def mixed_rows(num_rows: int, vocab: int, seed: int) -> list[SampleRow]:
    """Half greedy, half sampled with top-k/top-p; a third with penalties, a few with bias."""
    rng = random.Random(seed)
    rows = []
    for i in range(num_rows):
        params = SamplingParams(
            max_tokens=256, temperature=0.0 if i % 2 == 0 else 0.8, top_k=50 if i % 4 == 1 else 0,
            top_p=0.95 if i % 4 == 3 else 1.0, presence_penalty=0.5 if i % 3 == 0 else 0.0,
            repetition_penalty=1.1 if i % 3 == 0 else 1.0,
            logit_bias=((rng.randrange(vocab), 2.0),) if i % 5 == 0 else (), seed=i if i % 2 else None)
        prompt = [rng.randrange(vocab) for _ in range(512)]
        output = [rng.randrange(vocab) for _ in range(64)]
        rows.append(SampleRow(params, torch.Generator().manual_seed(i) if params.seed is not None else None,
                              prompt, output))
    return rows


def per_row(logits: torch.Tensor, rows: list[SampleRow], generator: torch.Generator) -> list[int]:
    out = []
    for i, r in enumerate(rows):
        x = reference_process(logits[i], r.params, r.prompt_ids, r.output_ids, (2,))
        if r.params.greedy:
            out.append(int(x.argmax()))
            continue
        probs = reference_filter(x, r.params).softmax(-1)
        out.append(int(torch.multinomial(probs, 1, generator=r.generator or generator)))
    return out


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--vocab", type=int, default=49152)
    ap.add_argument("--rows", type=int, nargs="+", default=[8, 64])
    args = ap.parse_args()
    machine = machine_description(torch.device("cpu"))
    print(f"machine: {machine['device']}; torch {torch.__version__}; vocab {args.vocab}; "
          f"prompt 512 + output 64 tokens per row; median of {args.runs} runs")
    table = []
    for num_rows in args.rows:
        logits = torch.randn(num_rows, args.vocab, generator=torch.Generator().manual_seed(0))
        rows = mixed_rows(num_rows, args.vocab, seed=1)
        gen = torch.Generator().manual_seed(2)
        batched = median_ms(lambda: sample(logits, rows, gen, (2,)), args.runs)
        loop = median_ms(lambda: per_row(logits, rows, gen), args.runs)
        table.append([num_rows, batched, loop, loop / batched])
    print(markdown_table(["rows", "batched sampler (ms)", "per-row reference (ms)", "speed-up"], table))


if __name__ == "__main__":
    main()
