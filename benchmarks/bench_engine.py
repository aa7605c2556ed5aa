"""Engine vs transformers on this machine: prefill throughput, TTFT, decode throughput at
batch 1, 16 and 32 (mixed prompt lengths, which a static batch pads), side by side in one run (a random-weight ~50M Llama by default; speed does not
depend on weights), or any model the engine loads (both sides then read the same fp32 weights).

    .venv/bin/python benchmarks/bench_engine.py [--runs 3] [--prompt-tokens 1024,4096]
    .venv/bin/python benchmarks/bench_engine.py --model smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if not __package__:  # run as a script: the repository root, for ``benchmarks.*``
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_report import machine_description, markdown_table  # noqa: E402
from benchmarks.random_llama import write_random_llama  # noqa: E402

from engine import Engine, EngineConfig, SamplingParams  # noqa: E402

# ~50M parameters: big enough for matmuls to dominate on a CPU.
BENCH_LLAMA = dict(
    vocab_size=32000, hidden_size=512, intermediate_size=2048, num_hidden_layers=8,
    num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=4096,
    rope_theta=10000.0, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True,
)


def prompts(n: int, lo: int, hi: int, seed: int, vocab: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[1] + [rng.randrange(3, vocab) for _ in range(rng.randrange(lo, hi + 1) - 1)] for _ in range(n)]


def hf_generate(model, batch: list[list[int]], new_tokens: int) -> float:
    """Seconds for transformers to generate ``new_tokens`` for every prompt (left-padded batch)."""
    width = max(map(len, batch))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in batch])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                       do_sample=False, pad_token_id=0)
    return time.perf_counter() - start


def ours_generate(engine: Engine, batch: list[list[int]], new_tokens: int) -> tuple[float, float]:
    """(seconds for the whole batch, median TTFT) with our engine."""
    params = SamplingParams(max_tokens=new_tokens, temperature=0.0, ignore_eos=True)
    start = time.perf_counter()
    outs = engine.generate(batch, params)
    return time.perf_counter() - start, statistics.median(o.stats.ttft_s for o in outs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--prompt-tokens", default="2048", help="comma-separated prompt lengths for TTFT")
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--model", default="", help="a model name the engine loads (default: a random ~50M Llama)")
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM

    from engine.model_source import resolve_model_dir

    torch.manual_seed(0)
    if args.model:
        path = resolve_model_dir(args.model)
    else:
        path = write_random_llama(Path(tempfile.gettempdir()) / "epic-bench-llama-50m", BENCH_LLAMA)
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa").eval()
    engine = Engine(EngineConfig(model=str(path), dtype="float32", max_num_batched_tokens=4096,
                                 enable_prefix_caching=False, kv_cache_bytes=1 << 30))
    n_params = sum(p.numel() for p in hf.parameters())
    c = hf.config
    print(f"setup: {machine_description(torch.device('cpu'))}")
    print(f"model: {args.model or 'random Llama'}, {n_params / 1e6:.0f}M params, fp32, {c.num_hidden_layers} layers, "
          f"hidden {c.hidden_size}, GQA {c.num_attention_heads}/{c.num_key_value_heads}")
    print(f"runs: {args.runs} (medians, the two sides alternating), torch threads {torch.get_num_threads()}")

    vocab = c.vocab_size
    lengths = [int(t) for t in args.prompt_tokens.split(",")]
    b1 = prompts(1, 128, 128, seed=2, vocab=vocab)
    b16 = prompts(16, 64, 256, seed=3, vocab=vocab)
    b32 = prompts(32, 32, 1024, seed=4, vocab=vocab)
    d = args.decode_tokens
    rows = []
    # Warm both paths once.
    hf_generate(hf, b1, 2)
    ours_generate(engine, b1, 2)

    def paired(hf_run, our_run) -> tuple[float, float]:
        """Medians of ``runs`` timings of each side, alternating sides run by run (so a slow
        spell of a shared machine falls on both)."""
        hf_t, our_t = [], []
        for _ in range(args.runs):
            hf_t.append(hf_run())
            our_t.append(our_run())
        return statistics.median(hf_t), statistics.median(our_t)

    # Prefill: TTFT of one long prompt (one new token).
    for tok in lengths:
        long = prompts(1, tok, tok, seed=1, vocab=vocab)
        hf_ttft, our_ttft = paired(lambda: hf_generate(hf, long, 1), lambda: ours_generate(engine, long, 1)[1])
        rows.append([f"prefill {tok} tok (tok/s)", tok / hf_ttft, tok / our_ttft, hf_ttft / our_ttft])
        rows.append([f"TTFT {tok} tok (s)", hf_ttft, our_ttft, hf_ttft / our_ttft])
    # Decode: (time for d tokens - time for 1 token) over d-1 tokens per sequence.
    for name, batch in (("batch 1", b1), ("batch 16", b16), ("batch 32 mixed", b32)):
        hf_first, our_first = paired(lambda: hf_generate(hf, batch, 1), lambda: ours_generate(engine, batch, 1)[0])
        hf_all, our_all = paired(lambda: hf_generate(hf, batch, d), lambda: ours_generate(engine, batch, d)[0])
        n = len(batch) * (d - 1)
        rows.append([f"decode {name} (tok/s)", n / (hf_all - hf_first), n / (our_all - our_first),
                     (hf_all - hf_first) / (our_all - our_first)])
        if batch is b32:  # the whole request: a static batch also pads the prefill
            rows.append([f"{name}, prefill + {d} tokens (s)", hf_all, our_all, hf_all / our_all])
    print(markdown_table(["measure", "transformers", "epic-serve", "ours / transformers (speed)"], rows))


if __name__ == "__main__":
    main()
