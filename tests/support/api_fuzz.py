"""Generated request bodies for fuzzing the HTTP API, and the check every answer must pass.

Bodies mix the endpoints' real fields (so validation past the first field is exercised) with
values of every JSON kind: wrong types, huge and negative numbers, NaN and infinities, deep
nesting, unicode and control characters, long strings, many documents, duplicate and path-like
document ids. Raw bodies add invalid JSON and invalid UTF-8.
"""

from __future__ import annotations

import json

from hypothesis import strategies as st

from deployments.http.errors import error_type

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/documents", "/tokenize", "/detokenize")
SAMPLING_FIELDS = ("max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p", "n", "best_of",
                   "seed", "stop", "stop_token_ids", "presence_penalty", "frequency_penalty", "repetition_penalty",
                   "min_tokens", "logit_bias", "ignore_eos", "skip_special_tokens", "include_stop_str_in_output",
                   "logprobs", "top_logprobs", "echo", "stream", "stream_options", "response_format",
                   "structured_outputs", "guided_json", "guided_regex", "guided_choice", "tools", "tool_choice",
                   "link_policy", "document_order", "cache_salt", "chat_template_kwargs", "user", "suffix",
                   "add_generation_prompt", "continue_final_message", "prompt_logprobs")

text = st.text(st.characters(codec="utf-8"), max_size=40)
odd_text = st.one_of(text, st.sampled_from(["", " ", "\x00", "\u202e", "../../etc/passwd", "a/b", ".", "..",
                                            "%2e%2e", "\ud7ff", "😀" * 50, "x" * 5000]))
numbers = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, -1, 1, 2**31, 2**63, 1e308, -0.0]))
scalars = st.one_of(st.none(), st.booleans(), numbers, odd_text)
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(text, kids, max_size=4),
                      max_leaves=12)


documents = st.lists(st.one_of(
    st.fixed_dictionaries({"text": odd_text}),
    st.fixed_dictionaries({"id": odd_text}),
    st.fixed_dictionaries({"title": odd_text, "text": odd_text}),
    st.fixed_dictionaries({"id": odd_text, "text": odd_text}),
    values,
), max_size=12)
messages = st.one_of(
    st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "tool", "x"]),
                                    "content": st.one_of(odd_text, values)}), max_size=4),
    values,
)
small_max_tokens = st.one_of(st.integers(-2, 6), values)


@st.composite
def generation_body(draw, chat: bool) -> dict:
    """A chat or completions body; a valid one asks for at most a few tokens (fast to serve)."""
    body = {"model": draw(st.one_of(st.just("epic-tiny"), values)), "max_tokens": draw(small_max_tokens)}
    if chat:
        body["messages"] = draw(messages)
    else:
        body["prompt"] = draw(st.one_of(odd_text, st.lists(st.integers(-5, 300), max_size=8),
                                        st.lists(odd_text, max_size=3), values))
    for name in draw(st.lists(st.sampled_from(SAMPLING_FIELDS), max_size=6, unique=True)):
        body[name] = draw(values)
    if draw(st.booleans()):
        body["documents"] = draw(documents)
    for name in draw(st.lists(text, max_size=2)):  # unknown fields: logged and ignored
        body.setdefault(name, draw(values))
    for name in ("n", "best_of", "max_tokens", "max_completion_tokens", "min_tokens"):
        if isinstance(body.get(name), int) and body[name] > 8:  # keep valid requests small
            body[name] = 8 if name != "min_tokens" else body[name]
    return body


@st.composite
def any_body(draw) -> tuple[str, bytes]:
    """(endpoint, raw body bytes)."""
    endpoint = draw(st.sampled_from(ENDPOINTS))
    kind = draw(st.integers(0, 9))
    if kind == 0:  # not JSON, or not UTF-8
        return endpoint, draw(st.one_of(st.binary(max_size=200), st.just(b"\xff\xfe{"), st.just(b'{"model": "x"'),
                                        st.just(b"")))
    if kind == 1:  # a field nested deeper than any parser should recurse (written as text)
        depth = draw(st.integers(100, 20_000))
        field = draw(st.sampled_from(["messages", "prompt", "documents", "tokens", "response_format"]))
        return endpoint, b'{"model": "epic-tiny", "%s": %s%s}' % (field.encode(), b"[" * depth, b"]" * depth)
    if endpoint == "/v1/chat/completions":
        body = draw(generation_body(chat=True))
    elif endpoint == "/v1/completions":
        body = draw(generation_body(chat=False))
    elif endpoint == "/v1/documents":
        body = {"documents": draw(documents)} if draw(st.booleans()) else draw(values)
    elif endpoint == "/tokenize":
        body = {"model": "epic-tiny", "prompt": draw(odd_text)} if draw(st.booleans()) else draw(values)
        if draw(st.booleans()):
            body = {"model": "epic-tiny", "messages": draw(messages)}
    else:
        body = {"model": "epic-tiny", "tokens": draw(st.one_of(st.lists(numbers, max_size=8), values))}
    return endpoint, json.dumps(body, allow_nan=True).encode()


def check_answer(status: int, content_type: str, payload: bytes) -> None:
    """A 200 with a JSON object (or a stream of them), or a 4xx in OpenAI's error shape; never a
    5xx, and no error event inside a 200 stream."""
    assert status < 500, f"{status}: {payload[:500]!r}"
    if status == 200 and content_type.startswith("text/event-stream"):
        events = [line[len(b"data: "):] for line in payload.split(b"\n") if line.startswith(b"data: ")]
        assert events and events[-1] == b"[DONE]", payload[-300:]
        for event in events[:-1]:
            assert "error" not in json.loads(event), event
        return
    body = json.loads(payload)
    assert isinstance(body, dict), payload[:200]
    if status >= 400:
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert isinstance(error["message"], str) and error["message"], error
        assert error["type"] == error_type(status), (status, error)
    else:
        assert status == 200 and "error" not in body, body
