"""vLLM's prompt logprobs (completions ``echo`` with ``logprobs``, the ``prompt_logprobs`` field)
and chat options (``echo``, ``add_generation_prompt``, ``continue_final_message``), through the
official openai client against the real Serve app."""

from __future__ import annotations

import httpx
import openai
import pytest
import torch
from tests.support.serving import SERVED_MODEL

from engine import SamplingParams

PROMPT = "Quartz lantern beside the orchard"  # used by no other test


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def hf_log_softmax(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32,
                                                 attn_implementation="eager").eval()

    @torch.no_grad()
    def run(ids: list[int]) -> torch.Tensor:  # [len(ids), vocab]
        return torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)

    return run


def token_text(engine, token_id: int) -> str:
    return engine.tokenizer.decode([token_id], skip_special_tokens=False)


def test_echo_with_logprobs_returns_the_prompts_logprobs(client, reference_engine, builder, hf_log_softmax):
    out = client.completions.create(model=SERVED_MODEL, prompt=PROMPT, max_tokens=4, temperature=0, logprobs=2,
                                    echo=True)
    choice = out.choices[0]
    ids = [t for s in builder.completion(PROMPT, []).segments for t in s.token_ids]
    ref = reference_engine.generate([ids], SamplingParams(max_tokens=4, temperature=0.0, logprobs=True,
                                                          top_logprobs=2, prompt_logprobs=2))[0]
    lp = choice.logprobs
    assert choice.text == PROMPT + ref.text
    assert lp.tokens == [token_text(reference_engine, t) for t in ids + ref.token_ids]
    # The first prompt token has no logprob; the rest equal the engine's and transformers'.
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    engine_values = [v.logprob for v in ref.prompt_logprobs[1:]]
    assert lp.token_logprobs[1:len(ids)] == pytest.approx(engine_values, abs=1e-5)
    hf = hf_log_softmax(ids)
    assert engine_values == pytest.approx([float(hf[p - 1, ids[p]]) for p in range(1, len(ids))], abs=1e-4)
    assert lp.token_logprobs[len(ids):] == pytest.approx(ref.logprobs, abs=1e-5)
    assert lp.text_offset[0] == 0 and lp.text_offset[len(ids)] == len(PROMPT)
    for got, value in zip(lp.top_logprobs[1:len(ids)], ref.prompt_logprobs[1:]):
        assert list(got.values()) == pytest.approx(list(value.top.values())[: len(got)], abs=1e-5)
    # vLLM's field comes too: the prompt token's own entry (with its rank), then the top 2.
    by_id = choice.model_extra["prompt_logprobs"]
    assert by_id[0] is None and len(by_id) == len(ids)
    for entry, token_id, value in zip(by_id[1:], ids[1:], ref.prompt_logprobs[1:]):
        assert entry[str(token_id)]["rank"] == value.rank
        assert entry[str(token_id)]["decoded_token"] == token_text(reference_engine, token_id)
        assert {k for k in entry} == {str(token_id), *map(str, value.top)}
    # Every prompt position was computed.
    assert out.usage.model_extra["cache"]["recomputed_tokens"] == len(ids)


def test_echo_with_logprobs_streamed_equals_whole(client):
    kwargs = dict(model=SERVED_MODEL, prompt=PROMPT, max_tokens=4, temperature=0, logprobs=1, echo=True)
    whole = client.completions.create(**kwargs).choices[0]
    events = [e for e in client.completions.create(**kwargs, stream=True) if e.choices]
    assert "".join(e.choices[0].text for e in events) == whole.text
    streamed = [e.choices[0].logprobs for e in events if e.choices[0].logprobs]
    assert sum((lp.tokens for lp in streamed), []) == whole.logprobs.tokens
    assert sum((lp.token_logprobs for lp in streamed), [])[1:] == pytest.approx(whole.logprobs.token_logprobs[1:],
                                                                                 abs=1e-6)
    assert sum((lp.text_offset for lp in streamed), []) == whole.logprobs.text_offset


def test_prompt_logprobs_field_on_a_linked_prompt_computes_every_position(client, reference_engine, base_url):
    document = "The orchard keeper rang the quartz bell at dusk, and the lantern glowed amber."
    kwargs = dict(model=SERVED_MODEL, prompt="Who rang the bell?", max_tokens=3, temperature=0)
    linked = client.completions.create(**kwargs, extra_body={"documents": [{"text": document}]})
    assert linked.usage.model_extra["cache"]["chunk_hit_tokens"] + \
        linked.usage.model_extra["cache"]["compiled_tokens"] > 0  # linked without prompt logprobs
    out = client.completions.create(**kwargs, extra_body={"documents": [{"text": document}], "prompt_logprobs": 0})
    cache = out.usage.model_extra["cache"]
    assert cache["chunk_hit_tokens"] == 0 and cache["prefix_hit_tokens"] == 0
    assert cache["recomputed_tokens"] == out.usage.prompt_tokens
    values = out.choices[0].model_extra["prompt_logprobs"]
    assert len(values) == out.usage.prompt_tokens and values[0] is None
    assert all(len(v) == 1 for v in values[1:])  # prompt_logprobs 0: the prompt token's own entry only
    assert out.choices[0].logprobs is None
    # A chat response carries them at the top level.
    chat = client.chat.completions.create(model=SERVED_MODEL, messages=[{"role": "user", "content": "Dusk?"}],
                                          max_tokens=2, extra_body={"prompt_logprobs": 1})
    assert chat.model_extra["prompt_logprobs"][0] is None
    assert len(chat.model_extra["prompt_logprobs"]) == chat.usage.prompt_tokens
    r = httpx.post(base_url + "/v1/completions", timeout=60,
                   json={**kwargs, "prompt_logprobs": 1, "stream": True})
    assert r.status_code == 400 and r.json()["error"]["param"] is None
    assert "prompt_logprobs cannot be streamed" in r.json()["error"]["message"]


def test_continue_final_message_with_echo(client, reference_engine, builder):
    messages = [{"role": "user", "content": "Where is the lantern?"},
                {"role": "assistant", "content": "The lantern is"}]
    layout = builder.chat(messages, [], add_generation_prompt=False, continue_final_message=True)
    assert layout.text.endswith("The lantern is")  # left open: no end-of-turn token after it
    out = client.chat.completions.create(model=SERVED_MODEL, messages=messages, max_tokens=5, temperature=0,
                                         extra_body={"echo": True, "add_generation_prompt": False,
                                                     "continue_final_message": True})
    ref = reference_engine.generate([list(layout.segments)], SamplingParams(max_tokens=5, temperature=0.0))[0]
    assert out.choices[0].message.content == "The lantern is" + ref.text
    assert out.choices[0].message.role == "assistant"
    # Streamed: the echo comes first.
    events = list(client.chat.completions.create(
        model=SERVED_MODEL, messages=messages, max_tokens=5, temperature=0, stream=True,
        extra_body={"echo": True, "add_generation_prompt": False, "continue_final_message": True}))
    assert "".join(e.choices[0].delta.content or "" for e in events if e.choices) == "The lantern is" + ref.text
    # Without echo, only the continuation; after a user message with a generation prompt, echo adds nothing.
    plain = client.chat.completions.create(model=SERVED_MODEL, messages=messages, max_tokens=5, temperature=0,
                                           extra_body={"add_generation_prompt": False,
                                                       "continue_final_message": True})
    assert plain.choices[0].message.content == ref.text
    asked = client.chat.completions.create(model=SERVED_MODEL, messages=messages[:1], max_tokens=3, temperature=0,
                                           extra_body={"echo": True})
    ask_ref = reference_engine.generate([list(builder.chat(messages[:1], []).segments)],
                                        SamplingParams(max_tokens=3, temperature=0.0))[0]
    assert asked.choices[0].message.content == ask_ref.text


def test_add_generation_prompt_and_continue_final_message_together_are_a_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=SERVED_MODEL, messages=[{"role": "user", "content": "x"}],
                                       extra_body={"continue_final_message": True})
    assert "add_generation_prompt and continue_final_message cannot both be true" in e.value.body["message"]
    assert e.value.body["code"] == "invalid_value"
