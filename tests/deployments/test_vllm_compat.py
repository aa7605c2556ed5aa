"""What vLLM's OpenAI server users rely on, through the official openai client against the real
Serve app: SDK default fields, vLLM's sampling fields, logprobs equal to the engine's, n and
best_of over one prompt computation, batched prompts, echo, structured output that validates."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

from engine import SamplingParams
from engine.sampling_params import StructuredOutput

from tests.support.serving import SERVED_MODEL


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=120)


def chat_layout(builder, content: str):
    messages = [{"role": "user", "content": content}]
    return messages, builder.chat(messages, [])


def test_sdk_default_fields_succeed(client, base_url):
    out = client.chat.completions.create(
        model=SERVED_MODEL, messages=[{"role": "user", "content": "Which harbor?"}], max_tokens=3, n=1, tools=[],
        tool_choice="none", response_format={"type": "text"}, user="u-7", parallel_tool_calls=True,
        extra_body={"stream_options": None, "some_future_field": {"x": 1}})
    assert out.usage.completion_tokens == 3
    r = httpx.post(base_url + "/v1/completions", timeout=60, json={
        "model": SERVED_MODEL, "prompt": "Stone", "max_tokens": 2, "n": 1, "best_of": 1, "echo": False,
        "logprobs": None, "stream": False, "stream_options": {"include_usage": True}, "suffix": None, "user": "u"})
    assert r.status_code == 200, r.text


def test_tools_are_a_clear_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=SERVED_MODEL, messages=[{"role": "user", "content": "x"}],
                                       tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])
    assert e.value.body["message"] == "tool calling is not supported for this model"
    assert e.value.body["param"] == "tools"


def test_chat_logprobs_equal_the_engines(client, reference_engine, builder):
    messages, layout = chat_layout(builder, "Where is the copper lantern?")
    out = client.chat.completions.create(model=SERVED_MODEL, messages=messages, max_tokens=6, temperature=0,
                                         logprobs=True, top_logprobs=3)
    ref = reference_engine.generate([list(layout.segments)], SamplingParams(
        max_tokens=6, temperature=0.0, logprobs=True, top_logprobs=3))[0]
    content = out.choices[0].logprobs.content
    tok = reference_engine.tokenizer
    assert [c.token for c in content] == [tok.decode([t], skip_special_tokens=False) for t in ref.token_ids]
    assert [c.logprob for c in content] == pytest.approx(ref.logprobs, abs=1e-4)
    for c, top in zip(content, ref.top_logprobs):
        assert [t.token for t in c.top_logprobs] == [tok.decode([i], skip_special_tokens=False) for i in top]
        assert [t.logprob for t in c.top_logprobs] == pytest.approx(list(top.values()), abs=1e-4)
        assert c.bytes == list(c.token.encode())
    assert "".join(c.token for c in content) == out.choices[0].message.content


def test_completion_logprobs_streamed_equal_whole_and_engine(client, reference_engine):
    kwargs = dict(model=SERVED_MODEL, prompt="Velvet ribbon and", max_tokens=7, temperature=0, logprobs=2)
    whole = client.completions.create(**kwargs).choices[0].logprobs
    events = list(client.completions.create(**kwargs, stream=True))
    streamed = [e.choices[0].logprobs for e in events if e.choices and e.choices[0].logprobs]
    assert sum((lp.tokens for lp in streamed), []) == whole.tokens
    assert sum((lp.token_logprobs for lp in streamed), []) == pytest.approx(whole.token_logprobs, abs=1e-6)
    assert sum((lp.text_offset for lp in streamed), []) == whole.text_offset
    ref = reference_engine.generate(["Velvet ribbon and"], SamplingParams(max_tokens=7, temperature=0.0,
                                                                          logprobs=True, top_logprobs=2))[0]
    assert whole.token_logprobs == pytest.approx(ref.logprobs, abs=1e-4)
    tok = reference_engine.tokenizer
    for got, want in zip(whole.top_logprobs, ref.top_logprobs):
        # Keyed by token text (OpenAI's shape): ids with the same text share one key.
        want_by_text = {}
        for i, lp in want.items():
            want_by_text.setdefault(tok.decode([i], skip_special_tokens=False), lp)
        assert got.keys() == want_by_text.keys()
        assert list(got.values()) == pytest.approx([want_by_text[k] for k in got], abs=1e-4)
    assert whole.text_offset[0] == 0


def recomputed_tokens_total(base_url: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(base_url + "/metrics", timeout=30).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "epic:recomputed_tokens_total" and s.labels == {"model_name": SERVED_MODEL})


def test_n_with_seed_reproducible_and_prompt_computed_once(client, reference_engine, base_url):
    prompt = "Falcon glacier market pepper saddle tunnel"  # used by no other test: no prefix hits
    kwargs = dict(model=SERVED_MODEL, prompt=prompt, max_tokens=8, temperature=1.0, seed=21, n=3)
    computed_before = recomputed_tokens_total(base_url)
    first = client.completions.create(**kwargs, extra_body={"ignore_eos": True, "cache_salt": "n-test-1"})
    computed_after = recomputed_tokens_total(base_url)
    again = client.completions.create(**kwargs, extra_body={"ignore_eos": True, "cache_salt": "n-test-2"})
    texts = [c.text for c in first.choices]
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert [c.text for c in again.choices] == texts and len(set(texts)) == 3
    refs = reference_engine.generate([prompt], SamplingParams(max_tokens=8, temperature=1.0, seed=21, n=3,
                                                              ignore_eos=True))
    assert texts == [r.text for r in refs]
    num_prompt = len(reference_engine.tokenizer.encode(prompt))
    assert first.usage.prompt_tokens == num_prompt
    assert first.usage.completion_tokens == 24
    # Three sequences, one prompt computation (distinct cache salts: no prefix-cache hits).
    assert first.usage.model_extra["cache"]["recomputed_tokens"] == num_prompt
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert computed_after - computed_before == num_prompt  # the engine's stats, on /metrics, agree


def test_best_of_returns_the_most_likely_sequence(client, reference_engine):
    prompt = "Harbor meadow"
    out = client.completions.create(model=SERVED_MODEL, prompt=prompt, max_tokens=6, temperature=1.0, seed=5,
                                    best_of=3, extra_body={"ignore_eos": True})
    refs = reference_engine.generate([prompt], SamplingParams(max_tokens=6, temperature=1.0, seed=5, n=3,
                                                              ignore_eos=True))
    best = max(refs, key=lambda r: r.cumulative_logprob)
    assert [c.text for c in out.choices] == [best.text]
    assert out.usage.completion_tokens == 18


def test_batched_prompts_and_echo(client, reference_engine):
    prompts = ["Ember forest", "Island jungle kettle"]
    out = client.completions.create(model=SERVED_MODEL, prompt=prompts, max_tokens=5, temperature=0, n=2, echo=True)
    refs = [reference_engine.generate([p], SamplingParams(max_tokens=5, temperature=0.0))[0] for p in prompts]
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    assert [c.text for c in out.choices] == [p + r.text for p, r in zip(prompts, refs) for _ in range(2)]
    assert out.usage.prompt_tokens == sum(len(reference_engine.tokenizer.encode(p)) for p in prompts)
    assert out.usage.completion_tokens == 20


def test_vllm_sampling_fields_reach_the_engine(client, reference_engine):
    prompt = "Copper harbor"
    extra = {"top_k": -1, "min_p": 0.05, "repetition_penalty": 1.3, "min_tokens": 3, "ignore_eos": True,
             "stop_token_ids": [5]}
    out = client.completions.create(model=SERVED_MODEL, prompt=prompt, max_tokens=9, temperature=0.8, seed=2,
                                    presence_penalty=0.4, frequency_penalty=0.3, logit_bias={"7": 3.0},
                                    extra_body=extra)
    ref = reference_engine.generate([prompt], SamplingParams(
        max_tokens=9, temperature=0.8, seed=2, presence_penalty=0.4, frequency_penalty=0.3, logit_bias=((7, 3.0),),
        min_p=0.05, repetition_penalty=1.3, min_tokens=3, ignore_eos=True, stop_token_ids=(5,)))[0]
    assert out.choices[0].text == ref.text and out.choices[0].finish_reason == ref.finish_reason


SCHEMAS = [
    {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]},
                                      "visits": {"type": "integer", "minimum": 0, "maximum": 99}},
     "required": ["city", "visits"], "additionalProperties": False},
    {"type": "object", "properties": {
        "owner": {"type": "object", "properties": {"admin": {"type": "boolean"},
                                                   "level": {"type": "string", "enum": ["low", "high"]}},
                  "required": ["admin", "level"], "additionalProperties": False},
        "flags": {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 3}},
     "required": ["owner", "flags"], "additionalProperties": False},
    {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "minItems": 2, "maxItems": 4},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=["enum-int", "nested", "array"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_json_schema_response_validates(client, schema, stream):
    kwargs = dict(model=SERVED_MODEL, messages=[{"role": "user", "content": "Answer in JSON."}], max_tokens=80,
                  temperature=1.0, seed=3,
                  response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}})
    if stream:
        text = "".join(e.choices[0].delta.content or "" for e in client.chat.completions.create(**kwargs, stream=True)
                       if e.choices)
    else:
        out = client.chat.completions.create(**kwargs)
        assert out.choices[0].finish_reason == "stop"
        text = out.choices[0].message.content
    jsonschema.validate(json.loads(text), schema)


def test_guided_choice_regex_and_json_over_http(client, reference_engine, builder):
    messages, layout = chat_layout(builder, "Pick one.")
    out = client.chat.completions.create(model=SERVED_MODEL, messages=messages, max_tokens=10, temperature=1.0,
                                         seed=8, n=3, extra_body={"guided_choice": ["river", "stone"]})
    assert {c.message.content for c in out.choices} <= {"river", "stone"}
    ref = reference_engine.generate([list(layout.segments)], SamplingParams(
        max_tokens=10, temperature=1.0, seed=8, n=3, structured=StructuredOutput("choice", choices=("river", "stone"))))
    assert [c.message.content for c in out.choices] == [r.text for r in ref]
    regex = client.chat.completions.create(model=SERVED_MODEL, messages=messages, max_tokens=10, temperature=0,
                                           extra_body={"structured_outputs": {"regex": "[0-9]{2}[xy]"}})
    text = regex.choices[0].message.content
    assert len(text) == 3 and text[:2].isdigit() and text[2] in "xy"


def test_chat_default_max_tokens_is_the_rest_of_the_context(client, builder):
    content = "stone " * 975
    messages, layout = chat_layout(builder, content)
    prompt_tokens = layout.routing_hint.total_tokens
    assert 1000 < prompt_tokens < 1020
    out = client.chat.completions.create(model=SERVED_MODEL, messages=messages, temperature=0,
                                         extra_body={"ignore_eos": True})
    assert out.usage.completion_tokens == 1024 - prompt_tokens
    assert out.choices[0].finish_reason == "length"


def test_context_length_exceeded(base_url):
    r = httpx.post(base_url + "/v1/chat/completions", timeout=60, json={
        "model": SERVED_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 1020})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert "maximum context length is 1024 tokens" in error["message"]


def test_continuous_usage_stats_and_chat_template_kwargs(client, builder):
    messages, layout = chat_layout(builder, "Which valley?")
    events = list(client.chat.completions.create(
        model=SERVED_MODEL, messages=messages, max_tokens=5, temperature=0, stream=True,
        stream_options={"include_usage": True}, extra_body={
            "stream_options": {"include_usage": True, "continuous_usage_stats": True}, "ignore_eos": True,
            "chat_template_kwargs": {"unused_flag": True}}))
    prompt_tokens = layout.routing_hint.total_tokens
    assert all(e.usage is not None and e.usage.prompt_tokens == prompt_tokens for e in events)
    counts = [e.usage.completion_tokens for e in events]
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] == 5
    assert events[-1].choices == [] and events[-1].usage.total_tokens == prompt_tokens + 5


def test_json_object_response_is_an_object(client, reference_engine):
    # The tiny model never closes a string by itself; a bias toward "}" lets it finish. The
    # grammar still decides: "}" cannot come first, so the output starts with "{".
    (close,) = reference_engine.tokenizer.encode("}", add_special_tokens=False)
    out = client.chat.completions.create(model=SERVED_MODEL, messages=[{"role": "user", "content": "JSON please."}],
                                         max_tokens=20, temperature=1.0, seed=0, n=3,
                                         logit_bias={str(close): 100}, response_format={"type": "json_object"})
    for choice in out.choices:
        assert choice.finish_reason == "stop"
        assert json.loads(choice.message.content) == {}
