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
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if not __package__:  # run as a script: the repository root, for ``benchmarks.*``
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_engine import BENCH_LLAMA, prompts  # noqa: E402
from benchmarks.bench_report import machine_description, markdown_table  # noqa: E402
from benchmarks.random_llama import write_random_llama  # noqa: E402

import engine.engine as engine_module  # noqa: E402
import engine.model_runner as runner_module  # noqa: E402
from engine import Engine, EngineConfig, SamplingParams  # noqa: E402

PHASES = ("schedule", "metadata", "forward", "lm head", "sample", "postprocess", "step")
HEADROOM = 64  # tokens past the measured steps: early requests decode while later ones prefill
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
    params = SamplingParams(max_tokens=steps + HEADROOM, temperature=0.0, ignore_eos=True)
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
    for request_id in ids:
        engine.abort(request_id)
    return {k: 1000 * statistics.median(v) for k, v in per_step.items()}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Print the table; return {workload: {phase: median ms}}."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=32, help="decode steps measured per workload")
    ap.add_argument("--model", default="", help="a model name the engine loads (default: a random ~50M Llama)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
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
    results = {}
    for name, size, lo, hi in WORKLOADS:
        hi = min(hi, engine.max_model_len - args.steps - HEADROOM)  # a small model's context bounds the prompts
        results[name] = measure(engine, timer, prompts(size, min(lo, hi), hi, seed=3, vocab=vocab), args.steps)
    rows = [[name, *(ms[p] for p in PHASES)] for name, ms in results.items()]
    print(markdown_table(["workload", *(f"{p} (ms)" for p in PHASES)], rows))
    return results


if __name__ == "__main__":
    main()
