"""Bad requests get their 4xx with an OpenAI-style body naming the problem; the server stays
healthy; an aborted stream frees its KV blocks."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from serving_helpers import SERVED_MODEL, replica_stats

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
MESSAGES = [{"role": "user", "content": "Which river?"}]


def chat(**fields) -> dict:
    return {"model": SERVED_MODEL, "messages": MESSAGES, "max_tokens": 4, **fields}


def completion(**fields) -> dict:
    return {"model": SERVED_MODEL, "prompt": "Stone", "max_tokens": 4, **fields}


# (path, body, status, param, what the message must say)
CASES = [
    (CHAT, b'{"model": "epic-tiny", "messages": [', 400, None, "not valid JSON"),
    (CHAT, b"[1, 2]", 400, None, "JSON object"),
    (CHAT, b"", 400, None, "not valid JSON"),
    (CHAT, chat(model="gpt-4"), 404, "model", "'gpt-4' does not exist"),
    (CHAT, {"model": SERVED_MODEL}, 400, "messages", "missing required parameter"),
    (CHAT, chat(messages=[]), 400, "messages", "at least 1"),
    (CHAT, chat(messages=[{"role": "robot", "content": "hi"}]), 400, "messages[0].role", "'system'"),
    (CHAT, chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]), 400,
     "messages[0].content", ""),
    (CHAT, chat(messages=[{"role": "assistant", "content": "a"}, {"role": "system", "content": "b"}]), 400, None,
     "roles must be system (first)"),
    (CHAT, chat(temperature=-1), 400, "temperature", "greater than or equal to 0"),
    (CHAT, chat(temperature="hot"), 400, "temperature", ""),
    (CHAT, chat(top_p=0), 400, "top_p", "greater than 0"),
    (CHAT, chat(max_tokens=0), 400, "max_tokens", "greater than or equal to 1"),
    (CHAT, chat(n=2), 400, "n", "only n=1"),
    (CHAT, chat(stop=["a", "b", "c", "d", "e"]), 400, "stop", "at most 4"),
    (CHAT, chat(seed=1.5), 400, "seed", ""),
    (CHAT, chat(stream_options={"include_usage": True}), 400, None, "needs stream=true"),
    (CHAT, chat(logprobs=True), 400, "logprobs", "not supported"),
    (CHAT, chat(tools=[{"type": "function"}]), 400, "tools", "unsupported parameter"),
    (CHAT, chat(frobnicate=1), 400, "frobnicate", "unsupported parameter"),
    (CHAT, chat(link_policy={"name": "magic"}), 400, "link_policy.name", "'legolink'"),
    (CHAT, chat(link_policy={"name": "legolink", "k": -1}), 400, "link_policy.k", "greater than or equal to 0"),
    (CHAT, chat(link_policy={"name": "cacheblend", "ratio": 1.5}), 400, "link_policy.ratio", "less than or equal"),
    (CHAT, chat(documents=[{"text": "   "}]), 400, "documents[0].text", "non-blank"),
    (CHAT, chat(documents=[{}]), 400, "documents[0]", '{"text": ...} or {"id": ...}'),
    (CHAT, chat(documents=[{"text": "a", "id": "b"}]), 400, "documents[0]", '{"text": ...} or {"id": ...}'),
    (CHAT, chat(documents=[{"id": "no-such-document"}]), 404, "documents[0].id", "no document with id"),
    (CHAT, chat(documents=[{"text": "x"}] * 9), 400, "documents", "at most 8"),
    (COMPLETIONS, completion(prompt="stone " * 1200), 400, None, "over the context of 1024 tokens"),
    (COMPLETIONS, completion(prompt=[5] * 1000, max_tokens=100), 400, None, "max_tokens is 100: together over"),
    (COMPLETIONS, completion(prompt=[5, 99999]), 400, None, "outside the vocabulary"),
    (COMPLETIONS, completion(prompt=["a", "b"]), 400, "prompt", "one prompt per request"),
    (COMPLETIONS, completion(prompt=[]), 400, "prompt", ""),
    (COMPLETIONS, completion(echo=True), 400, "echo", "not supported"),
    (COMPLETIONS, completion(best_of=3), 400, "best_of", "best_of=1"),
    (COMPLETIONS, completion(presence_penalty=0.5), 400, "presence_penalty", "not supported"),
    (COMPLETIONS, completion(prompt="x" * 300_000), 413, None, "limit is"),
]


@pytest.fixture(scope="module")
def http(base_url):
    with httpx.Client(base_url=base_url, timeout=60) as client:
        yield client


@pytest.mark.parametrize("path,body,status,param,says", CASES,
                         ids=[f"{i}-{c[3] or c[4][:20]}" for i, c in enumerate(CASES)])
def test_bad_request(http, path, body, status, param, says):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = http.post(path, content=content, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert says in error["message"]


def test_unknown_path_and_method(http):
    r = http.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = http.get("/v1/completions")
    assert r.status_code == 405 and "error" in r.json()


def test_server_healthy_after_bad_requests(http):
    for path, body, *_ in CASES:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        http.post(path, content=content, headers={"content-type": "application/json"})
    assert http.get("/health").status_code == 200
    r = http.post(CHAT, json=chat())
    assert r.status_code == 200
    assert r.json()["usage"]["completion_tokens"] == 4


def wait_for(predicate, timeout_s: float = 15.0, period_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period_s)
    return predicate()


def test_aborted_stream_frees_kv_blocks(base_url):
    body = completion(prompt="Copper lantern " * 20, max_tokens=600, ignore_eos=True, stream=True)
    with httpx.Client(base_url=base_url, timeout=60) as client:
        with client.stream("POST", COMPLETIONS, json=body) as r:
            assert r.status_code == 200
            replica = r.headers["x-epic-replica"]
            lines = r.iter_lines()
            received = 0
            for line in lines:
                if line.startswith("data: "):
                    received += 1
                if received == 3:
                    break
            busy = replica_stats(replica)
            assert busy["free_blocks"] < busy["total_blocks"]
        # Leaving the block closed the connection mid-stream.
    freed = wait_for(lambda: (s := replica_stats(replica))["free_blocks"] == s["total_blocks"] and s["queue_len"] == 0)
    assert freed, replica_stats(replica)


def test_over_capacity_is_503_with_retry_after(base_url, app_config):
    """More concurrent requests than the replicas run and queue: the rest are refused at once."""
    replica = app_config.replica
    capacity = replica.num_replicas * replica.max_ongoing_requests + replica.max_queued_requests
    body = completion(prompt="Harbor " * 30, max_tokens=64, ignore_eos=True)

    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=120) as client:
            return client.post(COMPLETIONS, json=body)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(capacity + 16) as pool:
        responses = list(pool.map(one, range(capacity + 16)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 503}, statuses
    assert statuses.count(200) >= capacity // 2, statuses
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "overloaded"
    with httpx.Client(base_url=base_url, timeout=60) as client:
        assert client.post(COMPLETIONS, json=completion()).status_code == 200
