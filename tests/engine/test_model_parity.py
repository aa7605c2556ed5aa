"""Our forward equals ``transformers``: logits (through the paged cache and the torch attention
backend) and greedy generation through ``engine.Engine``, for every supported model variant and
for the converted stories260K model."""

from __future__ import annotations

import pytest
import torch

from engine import SamplingParams
from engine.attention.base import SegmentLayout, build_metadata
from engine.attention.torch_backend import TorchAttentionBackend
from engine.loader import load_model
from engine.model import ForwardContext
from engine.rope import inverse_frequencies, rope_cos_sin

from tests.support.engines import make_engine
from tests.support.hf_reference import assert_same_tokens, hf_greedy, hf_model
from tests.support.tiny_hf_models import VARIANTS

CPU = torch.device("cpu")
BLOCK_SIZE = 4
LOGIT_ATOL = 1e-4  # fp32; logits here have magnitudes of 1..20

# Token-id prompts for the random models: BOS first, ids spread over the vocabulary, lengths that
# end mid-block, one sharing another's first 8 tokens, one long enough to prefill in pieces.
PROMPTS = [
    [1, 5, 17, 42, 99, 250, 3, 7],
    [1, 200, 201, 202],
    [1, 5, 17, 42, 99, 250, 3, 7, 8, 9, 10, 11, 12],
    [1] + list(range(10, 41)),
]
MAX_TOKENS = 16
# fp32 pages of BLOCK_SIZE; a step budget of 24 tokens, so long prompts prefill in pieces
ENGINE = dict(dtype="float32", block_size=BLOCK_SIZE, num_blocks=96, max_num_batched_tokens=24)


# --- logits through the paged cache ---------------------------------------------------------


class PagedForward:
    """Drives our model the way the engine does, one step at a time, over shuffled pages."""

    def __init__(self, model, num_blocks: int, seed: int):
        spec = model.spec
        self.model = model
        self.kv_caches = torch.zeros(
            spec.num_layers, num_blocks, 2, BLOCK_SIZE, spec.num_kv_heads, spec.head_dim, dtype=torch.float32
        )
        self.attention = TorchAttentionBackend(spec.num_heads, spec.num_kv_heads, spec.head_dim, spec.head_dim**-0.5)
        self.inv_freq = inverse_frequencies(spec)
        self.free = torch.randperm(num_blocks, generator=torch.Generator().manual_seed(seed)).tolist()
        self.tables: dict[str, tuple[int, ...]] = {}

    def add(self, name: str, num_positions: int) -> None:
        self.tables[name] = tuple(self.free.pop() for _ in range(-(-num_positions // BLOCK_SIZE)))

    @torch.no_grad()
    def step(self, rows: list[tuple[str, list[int], int]]) -> torch.Tensor:
        """Run one step; ``rows`` lists (sequence, token ids, first position) pieces, each a
        contiguous run whose earlier positions are already in the cache. Returns [N, vocab]."""
        layouts, positions, slots, tokens = [], [], [], []
        for name, ids, start in rows:
            table = self.tables[name]
            pos = list(range(start, start + len(ids)))
            layouts.append(SegmentLayout(len(ids), pos[-1] + 1, table))
            positions += pos
            slots += [table[p // BLOCK_SIZE] * BLOCK_SIZE + p % BLOCK_SIZE for p in pos]
            tokens += ids
        meta = build_metadata(layouts, positions, slots, BLOCK_SIZE, CPU)
        self.attention.plan(meta)
        cos, sin = rope_cos_sin(meta.positions, self.inv_freq)
        ctx = ForwardContext(cos, sin, meta.slot_mapping, self.attention, self.kv_caches)
        h = self.model.embed(torch.tensor(tokens))
        for layer in self.model.layers:
            h = layer(h, ctx)
        return self.model.compute_logits(h)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_logits_equal_transformers(hf_model_dirs, variant):
    model_dir = hf_model_dirs[variant]
    ours = load_model(str(model_dir), torch.float32, CPU).model
    theirs = hf_model(model_dir)
    long_seq, short_seq = PROMPTS[3] + [7, 8, 9, 250, 251], PROMPTS[0]
    with torch.no_grad():
        ref_long = theirs(torch.tensor([long_seq])).logits[0]  # [36, vocab]
        ref_short = theirs(torch.tensor([short_seq + [123]])).logits[0]  # [9, vocab]

    run = PagedForward(ours, num_blocks=32, seed=len(variant))
    run.add("long", len(long_seq))
    run.add("short", len(short_seq) + 1)
    # Step 1: the long prompt's first 15 tokens (ending mid-block) next to the whole short one.
    first = run.step([("long", long_seq[:15], 0), ("short", short_seq, 0)])
    # Step 2: the rest of the long prompt over its cached rows, and one decode row of the short.
    second = run.step([("long", long_seq[15:], 15), ("short", [123], len(short_seq))])
    got_long = torch.cat([first[:15], second[:-1]])
    got_short = torch.cat([first[15:], second[-1:]])
    torch.testing.assert_close(got_long, ref_long, atol=LOGIT_ATOL, rtol=0)
    torch.testing.assert_close(got_short, ref_short, atol=LOGIT_ATOL, rtol=0)


# --- greedy generation through the engine ---------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_greedy_generation_equals_transformers(hf_model_dirs, variant):
    model_dir = hf_model_dirs[variant]
    reference = hf_model(model_dir)
    # All prompts in one batch: decode rows, prefill pieces (the 32-token prompt does not fit one
    # step's budget of 24) and a shared prefix run side by side.
    outputs = make_engine(model_dir, **ENGINE).generate(PROMPTS, SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0))
    for prompt, out in zip(PROMPTS, outputs):
        tokens, gaps = hf_greedy(reference, prompt, MAX_TOKENS)
        assert_same_tokens(out.token_ids, tokens, gaps, f"{variant}, prompt of {len(prompt)} tokens")
        assert out.finish_reason == ("stop" if len(tokens) < MAX_TOKENS else "length")


STORIES_PROMPTS = [
    [1],
    [1, 403, 407, 261, 378],  # " Once upon a time"
    [1, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190, 200, 210, 220],
]


def test_stories260k_greedy_equals_transformers(stories260k_dir):
    reference = hf_model(stories260k_dir)
    outputs = make_engine(stories260k_dir, **ENGINE).generate(STORIES_PROMPTS, SamplingParams(max_tokens=32, temperature=0.0))
    for prompt, out in zip(STORIES_PROMPTS, outputs):
        tokens, gaps = hf_greedy(reference, prompt, 32)
        assert_same_tokens(out.token_ids, tokens, gaps, f"stories260K, prompt {prompt[:5]}...")
    assert len(outputs[0].token_ids) == 32
