"""SmolLM2-135M-Instruct, the embedded default: our engine equals ``transformers`` on chat prompts."""

from __future__ import annotations

import math

import pytest
import torch

from engine import Engine, EngineConfig, SamplingParams

from tests.support.hf_reference import assert_same_tokens, hf_greedy, hf_model

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Hello! Can you tell me a joke?"}],
    [{"role": "system", "content": "You answer in one sentence."},
     {"role": "user", "content": "Why is the sky blue?"}],
    [{"role": "user", "content": "Vela Morn lives in Ostrin. Tobin Harle lives in Quarry Bay.\n\n"
                                 "Where does Tobin Harle live?"}],
    [{"role": "user", "content": "Write a haiku about the sea."},
     {"role": "assistant", "content": "Waves fold into foam."},
     {"role": "user", "content": "Another one, about rain."}],
]
MAX_TOKENS = 32
TOP = 20
LOGPROB_ATOL = 2e-3  # fp32 over 30 layers; logits have magnitudes up to ~30


@pytest.fixture(scope="module")
def engine_and_prompts(smollm2_dir):
    engine = Engine(EngineConfig(model=str(smollm2_dir), dtype="float32"))
    tok = engine.tokenizer
    prompts = [tok(tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True),
                   add_special_tokens=False)["input_ids"] for c in CHATS]
    return engine, prompts


def test_greedy_chat_answers_equal_transformers_token_for_token(smollm2_dir, engine_and_prompts):
    engine, prompts = engine_and_prompts
    outs = engine.generate(prompts, SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0))
    ref = hf_model(smollm2_dir)
    for chat, prompt, out in zip(CHATS, prompts, outs):
        theirs, gaps = hf_greedy(ref, prompt, MAX_TOKENS)  # both end with EOS when they stop early
        assert_same_tokens(out.token_ids, theirs, gaps, chat[-1]["content"])
    assert "Paris" in outs[0].text


@torch.no_grad()
def test_first_step_logprobs_match_transformers(smollm2_dir, engine_and_prompts):
    engine, prompts = engine_and_prompts
    outs = engine.generate(prompts, SamplingParams(max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=TOP))
    ref = hf_model(smollm2_dir)
    for prompt, out in zip(prompts, outs):
        theirs = torch.log_softmax(ref(torch.tensor([prompt])).logits[0, -1].float(), -1)
        ours = out.top_logprobs[0]
        top = theirs.topk(TOP)
        assert set(ours) == set(top.indices.tolist())
        for token, value in ours.items():
            assert math.isclose(value, float(theirs[token]), abs_tol=LOGPROB_ATOL), (token, value, float(theirs[token]))
