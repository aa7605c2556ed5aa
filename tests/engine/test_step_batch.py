"""The step's row metadata built with tensor ops: exact positions, slots, tokens and segments."""

import torch

from engine.chunk_lifecycle import CompileJob
from engine.request import Request
from engine.sampling_params import SamplingParams
from engine.segments import LinkPolicy
from engine.step_batch import build_step_batch, runs_of, slots_of, tokens_in

BS = 4


def request(prompt: list[int], output: list[int], blocks: list[int]) -> Request:
    return Request("r", [], prompt, SamplingParams(), LinkPolicy("full"), 0.0, [], output_ids=list(output),
                   block_ids=blocks)


def test_rows_of_a_decode_row_a_split_prefill_and_a_compile_job():
    dec = request(list(range(100, 106)), [200, 201], blocks=[7, 3])  # 8 tokens; decode row at position 7
    pre = request(list(range(300, 310)), [], blocks=[5, 9, 2])  # runs (0, 2) and (5, 9)
    job = CompileJob(key=None, token_ids=[1, 40, 41, 42, 43], num_skip=1, pending=[], block_ids=[8, 6])
    batch = build_step_batch([dec, pre, job], [[(7, 8)], [(0, 2), (5, 9)], [(0, 5)]], BS, torch.device("cpu"))

    assert batch.row_offsets == [0, 1, 7, 12]
    assert batch.positions.tolist() == [7, 0, 1, 5, 6, 7, 8, 0, 1, 2, 3, 4]
    assert batch.token_ids.tolist() == [201, 300, 301, 305, 306, 307, 308, 1, 40, 41, 42, 43]
    # slot = page[pos // 4] * 4 + pos % 4
    assert batch.slots.tolist() == [3 * 4 + 3, 5 * 4, 5 * 4 + 1, 9 * 4 + 1, 9 * 4 + 2, 9 * 4 + 3, 2 * 4, 8 * 4,
                                    8 * 4 + 1, 8 * 4 + 2, 8 * 4 + 3, 6 * 4]
    meta = batch.meta
    assert meta.positions.tolist() == batch.positions.tolist()
    assert meta.slot_mapping.tolist() == batch.slots.tolist()
    assert meta.qo_indptr_cpu == [0, 1, 3, 7, 12]  # four query segments: one per run
    assert meta.kv_lens_cpu == [8, 2, 9, 5]
    assert meta.kv_page_indices_cpu.tolist() == [7, 3, 5, 5, 9, 2, 8, 6]
    assert batch.positions_of(1) == [0, 1, 5, 6, 7, 8]


def test_tokens_in_spans_prompt_and_output():
    req = request([10, 11, 12], [20, 21], blocks=[0, 1])
    assert tokens_in(req, 0, 5) == [10, 11, 12, 20, 21]
    assert tokens_in(req, 2, 4) == [12, 20]
    assert tokens_in(req, 3, 5) == [20, 21]
    assert tokens_in(req, 1, 2) == [11]


def test_slots_of_and_runs_of():
    assert slots_of([4, 2], torch.arange(2, 7), BS).tolist() == [18, 19, 8, 9, 10]
    assert runs_of([0, 1, 2, 5, 7, 8]) == [(0, 3), (5, 6), (7, 9)]
