"""Prompt logprobs: equal to transformers' log-softmax of the same prompt, the same however the
prompt is cut into prefill pieces, and computed for every position of a linked prompt (which is
then served with the ``full`` policy)."""

from __future__ import annotations

import pytest
import torch

from engine import Engine, EngineConfig, SamplingParams, Segment

PROMPT = [1, 5, 17, 42, 99, 250, 3, 7, 8, 9, 10, 11, 12, 60, 61]  # 15 tokens: ends mid-block


def make_engine(model_dir, **overrides) -> Engine:
    config = dict(model=str(model_dir), device="cpu", dtype="float32", block_size=4, num_blocks=96,
                  max_num_batched_tokens=64)
    return Engine(EngineConfig(**{**config, **overrides}))


@torch.no_grad()
def hf_prompt_logprobs(model_dir, prompt: list[int]) -> torch.Tensor:
    """[len(prompt), vocab]: transformers' log-softmax at every prompt position."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    return torch.log_softmax(model(torch.tensor([prompt])).logits[0].float(), dim=-1)


def test_prompt_logprobs_equal_transformers_and_the_engines_own(hf_model_dirs):
    model_dir = hf_model_dirs["llama_gqa_llama3"]
    ref = hf_prompt_logprobs(model_dir, PROMPT)
    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=3, logprobs=True, top_logprobs=3)
    whole = make_engine(model_dir).generate([PROMPT], params)[0]
    values = whole.prompt_logprobs
    assert len(values) == len(PROMPT) and values[0] is None
    for p in range(1, len(PROMPT)):
        expected = ref[p - 1]
        assert values[p].logprob == pytest.approx(float(expected[PROMPT[p]]), abs=1e-4)
        assert values[p].rank == int((expected > expected[PROMPT[p]]).sum()) + 1
        assert list(values[p].top) == expected.topk(3).indices.tolist()
    # The last prompt row's distribution is the one the first output token was sampled from.
    assert whole.top_logprobs[0] == pytest.approx(dict(zip(ref[-1].topk(3).indices.tolist(),
                                                           ref[-1].topk(3).values.tolist())), abs=1e-4)
    # Prefilled 4 positions per step: each piece's last row predicts the next piece's first token.
    pieces = make_engine(model_dir, max_num_batched_tokens=4).generate([PROMPT], params)[0]
    assert [v.rank for v in pieces.prompt_logprobs[1:]] == [v.rank for v in values[1:]]
    assert [v.logprob for v in pieces.prompt_logprobs[1:]] == pytest.approx([v.logprob for v in values[1:]], abs=1e-5)


def test_no_prompt_logprobs_unless_asked(hf_model_dirs):
    out = make_engine(hf_model_dirs["llama_mha"]).generate([PROMPT], SamplingParams(max_tokens=2))[0]
    assert out.prompt_logprobs is None


def test_a_linked_prompt_is_computed_in_full_for_prompt_logprobs(hf_model_dirs):
    engine = make_engine(hf_model_dirs["llama_mha"])
    doc = PROMPT[1:9]
    engine.compile_chunks([doc])
    segments = [Segment.prefix(PROMPT[:1]), Segment.chunk(doc), Segment.text(PROMPT[9:])]
    plain = engine.generate([PROMPT], SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0))[0]
    linked = engine.generate([segments], SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0))[0]
    assert linked.stats.chunk_hit_tokens == 0 and linked.stats.prefix_hit_tokens == 0
    assert linked.stats.recomputed_tokens == len(PROMPT)
    assert [v.logprob for v in linked.prompt_logprobs[1:]] == pytest.approx(
        [v.logprob for v in plain.prompt_logprobs[1:]], abs=1e-5)
    assert all(v.top == {} for v in linked.prompt_logprobs[1:])
    # Without prompt logprobs the same prompt links its chunk.
    reused = engine.generate([segments], SamplingParams(max_tokens=1, temperature=0.0))[0]
    assert reused.stats.chunk_hit_tokens == len(doc)


def test_n_sequences_share_one_computation_of_the_prompt_logprobs(hf_model_dirs):
    engine = make_engine(hf_model_dirs["llama_mha"])
    outs = engine.generate([PROMPT], SamplingParams(max_tokens=3, seed=1, n=3, prompt_logprobs=1))
    assert all(o.prompt_logprobs is outs[0].prompt_logprobs for o in outs)
    assert outs[0].stats.recomputed_tokens == len(PROMPT)
    assert all(o.stats.shared_prompt for o in outs[1:])
    assert engine.block_pool.num_free == engine.block_pool.num_blocks
