"""Markdown sections and plots of ``bench_gpu_pic.py``'s parts (one section per part, so parts
run in separate commands each keep their numbers in RESULTS.md)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.bench_report import markdown_table, save_line_plot

GiB = 2**30


def section(part: str, s, machine: dict, r: dict, out_dir: Path, smoke: bool) -> str:
    """The markdown of one part's results (with the setup it ran on); saves its plots."""
    title = {"ttft": "TTFT vs context length", "poisson": "Poisson multi-user workload",
             "decode": "decode vs the bandwidth limit"}[part]
    model = "tiny random Llama (smoke run)" if smoke else "Llama-3.1-8B shape, random bf16 weights"
    head = [
        f"## Position-independent caching, {title} (`benchmarks/bench_gpu_pic.py --parts {part}`)",
        "",
        f"- device: {machine['device']}; torch {machine['torch']}, flashinfer {machine['flashinfer']}",
        f"- date: {machine['date']}; commit: {machine['commit']}",
        f"- model: {model}; attention backend `{s.backend}`, dtype {s.dtype}, block 16, "
        f"{s.max_num_batched_tokens}-token step budget",
        f"- chunks of {s.chunk_tokens} tokens, resident in the engine's chunk pool; "
        f"prefix {s.prefix_tokens} + question {s.question_tokens} tokens",
        "",
    ]
    body = {"ttft": ttft_section, "poisson": poisson_section, "decode": decode_section}[part](s, r, out_dir)
    return "\n".join(head + body)


def ttft_section(s, r: dict, out_dir: Path) -> list[str]:
    policies = list(r)
    base = policies[-1]  # legolink
    rows = [[c] + [r[p][c]["ttft_s"] * 1e3 for p in policies] + [r[p][c]["ttft_s"] / r[base][c]["ttft_s"]
                                                               for p in policies[:-1]] for c in s.contexts]
    counts = [[c] + [f"{r[p][c]['recomputed']} / {r[p][c]['cached']}" for p in policies] for c in s.contexts]
    save_line_plot(out_dir / "ttft_vs_context.png", "TTFT vs context length", "context tokens", "TTFT (ms)",
                   {p: (list(s.contexts), [r[p][c]["ttft_s"] * 1e3 for c in s.contexts]) for p in policies},
                   logx=True, logy=True)
    return [
        f"TTFT of one request, median of {s.repeats} runs after a warm-up:",
        "",
        markdown_table(["context tokens"] + [f"{p} ms" for p in policies] + [f"{p} / {base}" for p in policies[:-1]],
                       rows),
        "",
        "Prompt tokens recomputed / reused from cache, per request:",
        "",
        markdown_table(["context tokens"] + policies, counts),
    ]


def poisson_section(s, r: dict, out_dir: Path) -> list[str]:
    policies, rates = list(r), list(s.rates)
    rows = [[rate, p, r[p][rate]["throughput_rps"], r[p][rate]["output_tps"], r[p][rate]["ttft_mean_s"] * 1e3,
             r[p][rate]["ttft_p50_s"] * 1e3, r[p][rate]["ttft_p90_s"] * 1e3] for rate in rates for p in policies]
    save_line_plot(out_dir / "poisson_ttft.png", "Mean TTFT vs request rate", "offered requests/s", "TTFT (ms)",
                   {p: (rates, [r[p][x]["ttft_mean_s"] * 1e3 for x in rates]) for p in policies}, logy=True)
    save_line_plot(out_dir / "poisson_throughput.png", "Throughput vs request rate", "offered requests/s",
                   "completed requests/s", {p: (rates, [r[p][x]["throughput_rps"] for x in rates]) for p in policies})
    return [
        f"{s.requests_per_rate} requests per rate, Poisson arrivals; each links {s.chunks_per_request} chunks "
        f"drawn from {s.corpus_chunks} resident ones and decodes {s.output_tokens} tokens. TTFT counts from "
        "the scheduled arrival.",
        "",
        markdown_table(["offered req/s", "policy", "done req/s", "output tok/s", "TTFT mean ms", "TTFT p50 ms",
                        "TTFT p90 ms"], rows),
    ]


def decode_section(s, r: dict, out_dir: Path) -> list[str]:
    batches = list(s.decode_batches)
    bandwidth = r[batches[0]]["bandwidth"]
    rows = [[b, r[b]["steps"], r[b]["tokens_per_s"], r[b]["limit_tokens_per_s"], f"{r[b]['fraction']:.0%}",
             r[b]["step_bytes"] / GiB] for b in batches]
    save_line_plot(out_dir / "decode_vs_limit.png", "Decode throughput vs bandwidth limit", "batch", "tokens/s",
                   {"measured": (batches, [r[b]["tokens_per_s"] for b in batches]),
                    "bandwidth limit": (batches, [r[b]["limit_tokens_per_s"] for b in batches])},
                   logx=True, logy=True)
    return [
        f"{s.decode_context}-token prompts; timed: the steps decoding the whole batch. Limit = measured copy "
        f"bandwidth ({bandwidth / 1e9:.0f} GB/s) / bytes read per step (weights + the batch's KV).",
        "",
        markdown_table(["batch", "timed steps", "tok/s", "limit tok/s", "of limit", "GiB read per step"], rows),
    ]
