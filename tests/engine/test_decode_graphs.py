"""Decode graphs on a CPU: sizes, padding into the scratch block, and the same tokens as eager
decode (the capture itself runs only on CUDA: tests/attention/test_flashinfer_gpu.py)."""

import random

import pytest

from engine import SamplingParams
from engine.decode_graphs import capture_sizes, graph_size, is_decode_step
from engine.model_runner import ModelRunner
from engine.scheduler import ScheduledWork, SchedulerOutput
from engine.step_batch import step_rows

from tests.support.engines import assert_no_leaks, make_engine

VARIANT = "llama_gqa_llama3"
SIZES = [1, 2, 4, 8]


def prompts(n: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[1] + [rng.randrange(3, 300) for _ in range(rng.randrange(3, 40))] for _ in range(n)]


def with_graphs(engine, sizes=SIZES):
    """Give ``engine`` a runner whose decode-only steps go through decode graphs (replayed eagerly)."""
    old = engine.runner
    engine.runner = ModelRunner(old.model, engine.block_pool.num_blocks, old.block_size, "torch", old.device,
                                old.kv_caches.dtype, sizes, max_seq_pages=64)
    return engine


def test_capture_sizes_and_the_size_a_step_runs_at():
    assert capture_sizes(1) == [1]
    assert capture_sizes(5) == [1, 2, 4, 8]
    assert capture_sizes(64) == [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64]
    assert [graph_size(n, SIZES) for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, None]


def test_only_steps_of_single_sampled_request_rows_are_decode_steps(hf_model_dirs):
    engine = make_engine(hf_model_dirs[VARIANT])
    a, b = (engine.make_request(p, SamplingParams(max_tokens=4)) for p in prompts(2, 0))
    decode = SchedulerOutput(work=[ScheduledWork(a, [(9, 10)], sample=True), ScheduledWork(b, [(4, 5)], sample=True)])
    assert is_decode_step(decode)
    assert not is_decode_step(SchedulerOutput(work=[ScheduledWork(a, [(0, 5)], sample=True)]))  # prefill
    assert not is_decode_step(SchedulerOutput(work=[ScheduledWork(a, [(4, 5)], sample=False)]))  # a prompt piece
    assert not is_decode_step(SchedulerOutput())


@pytest.mark.parametrize("n", [3, 5])
def test_greedy_tokens_equal_eager_decode(hf_model_dirs, n):
    """n requests finishing at different lengths, so steps run at sizes 8, 4, 2 and 1 with padding."""
    params = [SamplingParams(max_tokens=4 + 3 * i, temperature=0.0, ignore_eos=True, logprobs=0) for i in range(n)]
    eager = make_engine(hf_model_dirs[VARIANT]).generate(prompts(n, n), params)
    engine = with_graphs(make_engine(hf_model_dirs[VARIANT]))
    graphed = engine.generate(prompts(n, n), params)
    assert [o.token_ids for o in graphed] == [o.token_ids for o in eager]
    for g, e in zip(graphed, eager):
        assert g.logprobs == pytest.approx(e.logprobs, abs=1e-4)
    assert engine.runner.graphs.steps == max(p.max_tokens for p in params) - 1  # every decode step
    assert engine.runner.graphs.captured == []  # nothing is captured off CUDA
    assert_no_leaks(engine)


def test_padding_rows_write_only_the_scratch_block(hf_model_dirs):
    engine = with_graphs(make_engine(hf_model_dirs[VARIANT]))
    reqs = [engine.make_request(p, SamplingParams(max_tokens=8, temperature=0.0)) for p in prompts(3, 7)]
    for r in reqs:
        engine.submit(r)
    while any(not r.output_ids for r in reqs):
        engine.step()
    runner = engine.runner
    sched = engine.scheduler.schedule()
    assert is_decode_step(sched) and len(sched.work) == 3  # runs at size 4: one padding row
    before = runner.kv_caches.clone()
    rows = step_rows([w.seq for w in sched.work], [w.runs for w in sched.work], runner.block_size)
    runner.graphs.run(rows)
    changed = (runner.kv_caches != before).permute(1, 3, 0, 2, 4, 5).flatten(2).any(-1)  # [num_blocks + 1, bs]
    written = {(int(b), int(o)) for b, o in changed.nonzero()}
    real = {(int(s) // runner.block_size, int(s) % runner.block_size) for s in rows.slots}
    scratch = runner.graphs.scratch_block
    assert scratch == engine.block_pool.num_blocks  # past every block the pool hands out
    assert written == real | {(scratch, 0)}
