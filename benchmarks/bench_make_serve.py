"""The embedded default as a user meets it: `epic serve` startup, then TTFT over HTTP of chat
requests with documents, the first time (chunks compiled) and again in another order (chunks
linked), under `full` and under the default link policy, side by side in one run.

    .venv/bin/python benchmarks/bench_make_serve.py [--rounds 5] [--docs 4] [--doc-tokens 250]

Each round uses new documents (held-out facts among filler, :mod:`evals.rag_workload`), so
"first" always compiles. TTFT is the time to the first streamed content token, measured at the
client.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch
from bench_report import machine_description, markdown_table

from evals.rag_workload import RagExample, WorkloadSpec, generate
from evals.scoring import answer_correct

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workload(rounds: int, docs: int, doc_tokens: int, seed: int) -> list[RagExample]:
    """Held-out multi-document questions (:mod:`evals.rag_workload`), ``docs`` documents each,
    lengths counted with SmolLM2's tokenizer (the served model)."""
    from transformers import AutoTokenizer

    from engine.model_source import resolve_model_dir

    tok = AutoTokenizer.from_pretrained(resolve_model_dir("smollm2-135m-instruct"))
    spec = WorkloadSpec(seed, rounds, docs, docs, doc_tokens, two_hop_fraction=0.0)
    return generate(spec, lambda text: len(tok.encode(text, add_special_tokens=False)))


def ttft(url: str, model: str, question: str, docs: list[str], policy: dict | None) -> tuple[float, str]:
    body = {"model": model, "max_tokens": 24, "temperature": 0, "stream": True,
            "messages": [{"role": "user", "content": question}], "documents": [{"text": d} for d in docs]}
    if policy:
        body["link_policy"] = policy
    start, first, text = time.perf_counter(), None, []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=300) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
            if delta:
                first = first or time.perf_counter() - start
                text.append(delta)
    return first, "".join(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--docs", type=int, default=4)
    ap.add_argument("--doc-tokens", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    began = time.perf_counter()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "epic"), "serve", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if "epic-serve listening on" in line:
                break
        else:
            raise SystemExit("epic serve exited before listening")
        startup = time.perf_counter() - began
        model = httpx.get(f"{url}/v1/models", timeout=30).json()["data"][0]["id"]
        print(f"setup: {machine_description(torch.device('cpu'))}")
        print(f"served: {model} via `epic serve` (the embedded default), {args.docs} documents of ~{args.doc_tokens} "
              f"tokens, {args.rounds} rounds (new documents each), medians")
        print(f"startup (process start -> listening line): {startup:.1f} s")
        rng = random.Random(args.seed)
        rows = []
        for offset, (label, policy) in enumerate((("full", {"name": "full"}), ("default", None))):
            first_t, again_t, right = [], [], 0
            for ex in workload(args.rounds, args.docs, args.doc_tokens, args.seed + 1000 * offset):
                docs, question = list(ex.documents), ex.question
                t1, _ = ttft(url, model, question, docs, policy)
                shuffled = docs[:]
                rng.shuffle(shuffled)
                t2, text = ttft(url, model, question, shuffled, policy)
                first_t.append(t1)
                again_t.append(t2)
                right += answer_correct(text, ex.answer)
            f, a = statistics.median(first_t), statistics.median(again_t)
            rows.append([label, f, a, f / a, f"{right}/{args.rounds}"])
        print(markdown_table(["link policy", "TTFT first (s)", "TTFT again, reordered (s)", "first / again",
                              "answer right (again)"], rows))
    finally:
        proc.terminate()
        proc.wait(timeout=90)


if __name__ == "__main__":
    main()
