"""Where a decode step's time goes: schedule, step metadata (rows, slots, attention plan, RoPE
tables), the layers' forward, the LM head, sampling and the rest of postprocessing, per step at
batch 1, 16 and 32 (mixed prompt lengths), medians over the measured steps.

    .venv/bin/python benchmarks/bench_step.py [--steps 32] [--model smollm2-135m-instruct]

Only decode steps are timed: every request is prefilled first. The phases are timed by wrapping
the engine's own functions (nothing here changes what a step does).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch
from bench_engine import BENCH_LLAMA, prompts
from bench_report import machine_description, markdown_table
from random_llama import write_random_llama

import engine.engine as engine_module
import engine.model_runner as runner_module
from engine import Engine, EngineConfig, SamplingParams

PHASES = ("schedule", "metadata", "forward", "lm head", "sample", "postprocess", "step")
# (name, batch size, shortest and longest prompt)
WORKLOADS = (("batch 1", 1, 128, 128), ("batch 16", 16, 64, 256), ("batch 32 mixed", 32, 32, 1024))


class PhaseTimer:
    """Wall time per phase of the current step, with the device synchronised at each edge."""

    def __init__(self, device: torch.device):
        self.device = device
        self.current: dict[str, float] = defaultdict(float)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def phase(self, name: str):
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.current[name] += time.perf_counter() - start

    def wrap(self, owner, attr: str, name: str) -> None:
        inner = getattr(owner, attr)

        def timed(*args, **kwargs):
            with self.phase(name):
                return inner(*args, **kwargs)

        setattr(owner, attr, timed)


def instrument(engine: Engine, timer: PhaseTimer) -> None:
    """Time the engine's phases by wrapping the functions that make them up."""
    runner = engine.runner
    timer.wrap(engine.scheduler, "schedule", "schedule")
    timer.wrap(runner_module, "build_step_batch", "metadata")
    timer.wrap(runner, "forward_context", "metadata")
    timer.wrap(runner, "execute", "execute")
    timer.wrap(runner.model, "compute_logits", "lm head")
    timer.wrap(engine_module, "sample", "sample")
    timer.wrap(engine, "_postprocess", "postprocess+sample")


def measure(engine: Engine, timer: PhaseTimer, batch: list[list[int]], steps: int) -> dict[str, float]:
    """Median milliseconds per phase over ``steps`` decode steps of ``batch``."""
    params = SamplingParams(max_tokens=steps + 2, temperature=0.0, ignore_eos=True)
    ids = [engine.add_request(p, params) for p in batch]
    while any(not engine._requests[i].output_ids for i in ids):
        engine.step()
    per_step: dict[str, list[float]] = defaultdict(list)
    for _ in range(steps):
        timer.current.clear()
        with timer.phase("step"):
            engine.step()
        t = timer.current
        per_step["schedule"].append(t["schedule"])
        per_step["metadata"].append(t["metadata"])
        per_step["lm head"].append(t["lm head"])
        per_step["forward"].append(t["execute"] - t["metadata"] - t["lm head"])
        per_step["sample"].append(t["sample"])
        per_step["postprocess"].append(t["postprocess+sample"] - t["sample"])
        per_step["step"].append(t["step"])
    while engine.has_unfinished():
        engine.step()
    return {k: 1000 * statistics.median(v) for k, v in per_step.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=32, help="decode steps measured per workload")
    ap.add_argument("--model", default="", help="a model name the engine loads (default: a random ~50M Llama)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    from engine.model_source import resolve_model_dir

    if args.model:
        path = resolve_model_dir(args.model)
    else:
        path = write_random_llama(Path(tempfile.gettempdir()) / "epic-bench-llama-50m", BENCH_LLAMA)
    device = torch.device(args.device)
    engine = Engine(EngineConfig(model=str(path), dtype="float32", device=args.device, max_num_batched_tokens=4096,
                                 enable_prefix_caching=False, kv_cache_bytes=1 << 30))
    timer = PhaseTimer(device)
    instrument(engine, timer)
    vocab = engine.spec.vocab_size
    print(f"setup: {machine_description(device)}")
    print(f"model: {args.model or 'random Llama'}, {args.steps} decode steps per workload (medians, ms per step)")
    engine.generate([[1, 5, 6]], SamplingParams(max_tokens=2, temperature=0.0))  # warm up
    rows = []
    for name, size, lo, hi in WORKLOADS:
        ms = measure(engine, timer, prompts(size, lo, hi, seed=3, vocab=vocab), args.steps)
        rows.append([name, *(ms[p] for p in PHASES)])
    print(markdown_table(["workload", *(f"{p} (ms)" for p in PHASES)], rows))


if __name__ == "__main__":
    main()
