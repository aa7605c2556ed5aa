"""Small pure pieces of the serving layer: metric observations, chunk-id blobs, request schema."""

from __future__ import annotations

import json

import pytest

from documents.chunk_ids import ChunkIdStore
from deployments.http.errors import APIError
from deployments.metrics import Observation, store_observations
from deployments.http.bodies import parse_body
from deployments.protocol import ModelInfo
from deployments.http.schema import ChatCompletionRequest, CompletionRequest
from deployments.http.token_budget import resolve_max_tokens
from engine.sampling_params import SamplingParams, StructuredOutput
from kvstore.directory import DirBlobs
from kvstore.keys import chunk_key


def test_store_observations_are_increments():
    before = {"tiers": {"memory": {"errors": 0, "evictions": 2, "bytes_in": 100, "bytes_out": 0}},
              "writes": {"dropped": 1, "failed": 0}}
    after = {"tiers": {"memory": {"errors": 0, "evictions": 5, "bytes_in": 100, "bytes_out": 40},
                       "s3": {"errors": 3, "evictions": 0, "bytes_in": 0, "bytes_out": 0}},
             "writes": {"dropped": 1, "failed": 2}}
    assert store_observations(before, after) == [
        Observation("epic_store_evictions", 3, {"tier": "memory"}),
        Observation("epic_store_bytes", 40, {"tier": "memory", "direction": "out"}),
        Observation("epic_store_errors", 3, {"tier": "s3"}),
        Observation("epic_store_dropped_writes", 2),
    ]


def test_chunk_ids_round_trip_and_verify(tmp_path):
    fp = "a" * 32
    store = ChunkIdStore(DirBlobs(tmp_path), fp)
    ids = (1, 300, 70000, 5)
    key = store.put(ids)
    assert key == chunk_key(fp, ids)
    assert store.get(key) == ids
    assert ChunkIdStore(DirBlobs(tmp_path), "b" * 32).get(key) is None  # another model's reader
    (tmp_path / "chunk-ids" / key[:2] / f"{key}.ids").write_bytes(b"\x01\x00\x00\x00")  # torn / wrong
    assert store.get(key) is None
    assert store.get(chunk_key(fp, [9])) is None
    with pytest.raises(ValueError, match="not a chunk key"):
        store.get("../escape")


def test_schema_maps_to_engine_parameters():
    chat, unknown = parse_body(ChatCompletionRequest, json.dumps({
        "model": "m", "max_completion_tokens": 7, "max_tokens": 99, "temperature": 0, "stop": "x", "seed": 3,
        "top_k": -1, "ignore_eos": True, "min_p": 0.1, "min_tokens": 2, "presence_penalty": 0.5,
        "frequency_penalty": -0.5, "repetition_penalty": 1.2, "logit_bias": {"17": -100}, "stop_token_ids": [4],
        "skip_special_tokens": False, "include_stop_str_in_output": True, "n": 2, "best_of": 3,
        "logprobs": True, "top_logprobs": 3,
        "messages": [{"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
    }).encode())
    assert unknown == []
    assert chat.requested_max_tokens == 7  # max_completion_tokens over max_tokens
    params = chat.sampling(chat.requested_max_tokens)
    assert params == SamplingParams(
        max_tokens=7, temperature=0.0, stop=("x",), seed=3, top_k=0, ignore_eos=True, min_p=0.1, min_tokens=2,
        presence_penalty=0.5, frequency_penalty=-0.5, repetition_penalty=1.2, logit_bias=((17, -100.0),),
        stop_token_ids=(4,), skip_special_tokens=False, include_stop_str_in_output=True, n=3, logprobs=True,
        top_logprobs=3)
    assert (chat.num_choices, chat.num_sequences) == (2, 3)
    assert chat.messages[0].as_template_message() == {"role": "system", "content": "ab"}
    completion, _ = parse_body(CompletionRequest, b'{"model": "m", "prompt": [[1, 2, 3]], "logprobs": 0}')
    assert completion.prompts == [[1, 2, 3]] and completion.num_logprobs == 0
    batch, _ = parse_body(CompletionRequest, b'{"model": "m", "prompt": ["one", "two"]}')
    assert batch.prompts == ["one", "two"]


SDK_DEFAULTS = {"n": 1, "tools": [], "tool_choice": "none", "response_format": {"type": "text"},
                "stream_options": {"include_usage": True}, "user": "u-1", "parallel_tool_calls": True,
                "temperature": None, "top_p": None, "presence_penalty": None, "logprobs": None}


def test_sdk_defaults_are_accepted_and_unknown_fields_reported():
    raw = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi", "tool_calls": []}],
                      "frobnicate": 1, **SDK_DEFAULTS}).encode()
    chat, unknown = parse_body(ChatCompletionRequest, raw)
    assert unknown == ["frobnicate", "messages[0].tool_calls"]
    assert chat.sampling(4) == SamplingParams(max_tokens=4)
    assert not chat.include_usage  # stream_options without stream: nothing to stream
    with pytest.raises(APIError) as e:
        parse_body(ChatCompletionRequest, raw, strict=True)
    assert (e.value.status, e.value.param, e.value.code) == (400, "frobnicate", "unsupported_parameter")


@pytest.mark.parametrize("fields,expected", [
    ({"response_format": {"type": "json_object"}}, StructuredOutput("json_object")),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer"}}}},
     StructuredOutput("json_schema", '{"type": "integer"}')),
    ({"guided_json": {"type": "boolean"}}, StructuredOutput("json_schema", '{"type": "boolean"}')),
    ({"guided_regex": "[ab]+"}, StructuredOutput("regex", "[ab]+")),
    ({"guided_choice": ["x", "y"]}, StructuredOutput("choice", choices=("x", "y"))),
    ({"structured_outputs": {"choice": ["z"]}}, StructuredOutput("choice", choices=("z",))),
    ({"structured_outputs": {"json": '{"type": "null"}'}}, StructuredOutput("json_schema", '{"type": "null"}')),
])
def test_structured_output_fields(fields, expected):
    chat, _ = parse_body(ChatCompletionRequest, json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "q"}], **fields}).encode())
    assert chat.sampling(8).structured == expected


@pytest.mark.parametrize("fields,param,says", [
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "tool calling is not supported"),
    ({"tool_choice": "required"}, "tool_choice", "tool calling is not supported"),
    ({"top_logprobs": 2}, None, "top_logprobs needs logprobs=true"),
    ({"best_of": 1, "n": 2}, None, "best_of (1) must be at least n (2)"),
    ({"best_of": 3, "stream": True}, None, "cannot be streamed"),
    ({"logit_bias": {"x": 1}}, "logit_bias", "token ids"),
    ({"top_k": -2}, "top_k", "greater than or equal to -1"),
    ({"chat_template_kwargs": {"documents": []}}, "chat_template_kwargs", "set by the server"),
])
def test_refused_fields(fields, param, says):
    with pytest.raises(APIError) as e:
        parse_body(ChatCompletionRequest, json.dumps(
            {"model": "m", "messages": [{"role": "user", "content": "q"}], **fields}).encode())
    assert (e.value.status, e.value.param) == (400, param) and says in e.value.message


INFO = ModelInfo(max_model_len=1000, vocab_size=100, kv_capacity_tokens=600)


@pytest.mark.parametrize("endpoint,requested,prompt,cap,expected", [
    ("completions", None, 100, None, 16),    # OpenAI's completions default
    ("completions", None, 590, None, 10),    # ... within the KV pool (600)
    ("chat", None, 100, None, 500),          # the rest of the context, within the KV pool (600)
    ("chat", None, 100, 256, 256),           # ingress.default_max_tokens caps the default
    ("chat", None, 300, None, 300),          # KV pool: 600 - 300
    ("chat", 800, 150, None, 800),           # asked for: the engine decides about its pool
])
def test_resolve_max_tokens(endpoint, requested, prompt, cap, expected):
    assert resolve_max_tokens(endpoint, requested, prompt, INFO, cap) == expected


@pytest.mark.parametrize("endpoint,requested,prompt,says", [
    ("chat", 901, 100, "you requested 1001 tokens (100 in the messages, 901 in the completion)"),
    ("completions", None, 1000, "you requested 1001 tokens (1000 in the prompt, 1 in the completion)"),
    ("completions", 17, 990, "you requested 1007 tokens (990 in the prompt, 17 in the completion)"),
])
def test_context_length_exceeded(endpoint, requested, prompt, says):
    with pytest.raises(APIError) as e:
        resolve_max_tokens(endpoint, requested, prompt, INFO, None)
    assert (e.value.status, e.value.code) == (400, "context_length_exceeded")
    assert "maximum context length is 1000 tokens" in e.value.message and says in e.value.message


def test_echo_with_logprobs_asks_for_prompt_logprobs():
    def sampling(raw: bytes):
        return parse_body(CompletionRequest, raw)[0].sampling(4)

    assert sampling(b'{"model": "m", "prompt": "x", "echo": true, "logprobs": 2}').prompt_logprobs == 2
    assert sampling(b'{"model": "m", "prompt": "x", "echo": true}').prompt_logprobs is None
    assert sampling(b'{"model": "m", "prompt": "x", "logprobs": 2}').prompt_logprobs is None
    assert sampling(b'{"model": "m", "prompt": "x", "echo": true, "logprobs": 2, "prompt_logprobs": 0}'
                    ).prompt_logprobs == 0
    chat, _ = parse_body(ChatCompletionRequest, b'{"messages": [{"role": "user", "content": "q"}], '
                                                b'"prompt_logprobs": 3}')
    assert chat.model is None and chat.sampling(4).prompt_logprobs == 3


def test_chat_reply_role_and_echo():
    def body(**fields) -> ChatCompletionRequest:
        return parse_body(ChatCompletionRequest, json.dumps({"messages": [
            {"role": "user", "content": "q"}, {"role": "assistant", "content": "The answer is"}], **fields}
        ).encode())[0]

    assert (body().reply_role, body().echo_text) == ("assistant", "")
    assert body(echo=True).echo_text == "The answer is"  # the final message is the assistant's
    kept = body(echo=True, add_generation_prompt=False, continue_final_message=True)
    assert kept.template_options == {"add_generation_prompt": False, "continue_final_message": True}
    user_last = parse_body(ChatCompletionRequest, b'{"messages": [{"role": "user", "content": "q"}], '
                                                  b'"echo": true, "add_generation_prompt": false}')[0]
    assert (user_last.reply_role, user_last.echo_text) == ("user", "q")
    with pytest.raises(APIError, match="cannot both be true"):
        body(continue_final_message=True)


def test_documents_in_vllm_shape():
    chat, _ = parse_body(ChatCompletionRequest, json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "q"}],
         "documents": [{"title": "Rivers", "text": "The river is long."}, {"text": "Plain."}]}).encode())
    assert [d.model_text for d in chat.documents] == ["Rivers\nThe river is long.", "Plain."]


def test_schema_errors_name_the_parameter():
    with pytest.raises(APIError) as e:
        parse_body(ChatCompletionRequest, b'{"model": "m", "messages": [{"role": "user", "content": 5}]}')
    assert (e.value.status, e.value.param) == (400, "messages[0].content")
    with pytest.raises(APIError) as e:
        parse_body(CompletionRequest, b'{"model": "m", "prompt": "x", "documents": [{"text": "a"}, {"id": 3}]}')
    assert e.value.param == "documents[1].id"
