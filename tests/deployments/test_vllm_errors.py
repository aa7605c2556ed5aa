"""Our error answers next to vLLM's OpenAI server's for the same request, one row per case.

Each row's status is the one vLLM answers (ours must equal it); ``type`` and ``code`` are ours:
OpenAI's ``type`` and string codes (``model_not_found``, ``context_length_exceeded``), which
OpenAI clients read, where vLLM puts an exception-like type (``BadRequestError``,
``NotFoundError``, or the HTTP reason for a body its schema refuses) and the status number as
``code``. ``vllm_type`` records vLLM's for the README's table. A second app with an API key, in
the same Serve instance, answers the authentication row and shows that each ingress exposes
only its own metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support.serving import SERVED_MODEL, app_config_dict, running_app

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
MESSAGES = [{"role": "user", "content": "Which river?"}]
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
KEYED_APP, KEYED_MODEL, API_KEY = "epic-keyed", "epic-keyed-model", "sk-test-7"


def chat(**fields) -> dict:
    return {"model": SERVED_MODEL, "messages": MESSAGES, "max_tokens": 2, **fields}


def completion(**fields) -> dict:
    return {"model": SERVED_MODEL, "prompt": "Stone", "max_tokens": 2, **fields}


@dataclass(frozen=True)
class Row:
    case: str
    method: str
    path: str
    body: dict | bytes | None
    status: int  # vLLM's, and ours
    type: str | None  # ours (None: a success)
    code: str | None
    vllm_type: str | None
    headers: dict = field(default_factory=dict)
    keyed: bool = False  # sent to the app that requires an API key


ROWS = [
    Row("unknown model", "POST", CHAT, chat(model="gpt-4"), 404, "invalid_request_error", "model_not_found",
        "NotFoundError"),
    Row("model left out (the served one)", "POST", CHAT, {"messages": MESSAGES, "max_tokens": 2}, 200, None, None,
        None),
    Row("bad JSON", "POST", CHAT, b'{"model": "epic-tiny", "messages": [', 400, "invalid_request_error",
        "invalid_json", "Bad Request"),
    Row("validation error (temperature -1)", "POST", CHAT, chat(temperature=-1), 400, "invalid_request_error",
        "invalid_value", "Bad Request"),
    Row("missing field (messages)", "POST", CHAT, {"model": SERVED_MODEL}, 400, "invalid_request_error",
        "missing_parameter", "Bad Request"),
    Row("context length exceeded", "POST", CHAT, chat(max_tokens=2000), 400, "invalid_request_error",
        "context_length_exceeded", "BadRequestError"),
    Row("best_of < n", "POST", COMPLETIONS, completion(best_of=2, n=3), 400, "invalid_request_error",
        "invalid_value", "Bad Request"),
    Row("best_of > n streamed", "POST", COMPLETIONS, completion(best_of=3, n=1, stream=True), 400,
        "invalid_request_error", "invalid_value", "Bad Request"),
    Row("n = 0", "POST", CHAT, chat(n=0), 400, "invalid_request_error", "invalid_value", "Bad Request"),
    Row("logprobs over 20", "POST", COMPLETIONS, completion(logprobs=21), 400, "invalid_request_error",
        "invalid_value", "BadRequestError"),
    Row("top_logprobs without logprobs", "POST", CHAT, chat(top_logprobs=2), 400, "invalid_request_error",
        "invalid_value", "Bad Request"),
    Row("prompt_logprobs streamed", "POST", COMPLETIONS, completion(prompt_logprobs=1, stream=True), 400,
        "invalid_request_error", "invalid_value", "Bad Request"),
    Row("tools (tool_choice auto)", "POST", CHAT, chat(tools=[TOOL]), 400, "invalid_request_error",
        "unsupported_parameter", "BadRequestError"),
    Row("tools with tool_choice none", "POST", CHAT, chat(tools=[TOOL], tool_choice="none"), 200, None, None, None),
    Row("add_generation_prompt and continue_final_message", "POST", CHAT, chat(continue_final_message=True), 400,
        "invalid_request_error", "invalid_value", "Bad Request"),
    Row("unknown route", "GET", "/v1/nothing", None, 404, "invalid_request_error", "not_found", "Not Found"),
    Row("method not allowed", "GET", COMPLETIONS, None, 405, "invalid_request_error", None, "Method Not Allowed"),
    Row("missing API key", "POST", CHAT, chat(model=KEYED_MODEL), 401, "invalid_request_error", "invalid_api_key",
        "Unauthorized", keyed=True),
    Row("wrong API key", "POST", CHAT, chat(model=KEYED_MODEL), 401, "invalid_request_error", "invalid_api_key",
        "Unauthorized", headers={"authorization": "Bearer nope"}, keyed=True),
    Row("right API key", "POST", CHAT, chat(model=KEYED_MODEL), 200, None, None, None,
        headers={"authorization": f"Bearer {API_KEY}"}, keyed=True),
]
# Overload (503, code "overloaded", Retry-After: 1) needs a flood of requests:
# test_errors.test_over_capacity_is_503_with_retry_after.


@pytest.fixture(scope="module")
def keyed_url(serve_url, tiny_model_dir, tmp_path_factory) -> str:
    """A second app: one engine replica, its own served name, an API key."""
    raw = app_config_dict(tiny_model_dir, tmp_path_factory.mktemp("keyed-store"), num_replicas=1)
    raw["ingress"].update(served_model_name=KEYED_MODEL, api_key=API_KEY)
    with running_app(serve_url, raw, KEYED_APP) as url:
        yield url


@pytest.mark.parametrize("row", ROWS, ids=[r.case for r in ROWS])
def test_error_matches_vllms_status(row, base_url, request):
    url = request.getfixturevalue("keyed_url") if row.keyed else base_url
    content = row.body if isinstance(row.body, bytes) or row.body is None else json.dumps(row.body).encode()
    r = httpx.request(row.method, url + row.path, content=content, timeout=60,
                      headers={"content-type": "application/json", **row.headers})
    assert r.status_code == row.status, r.text
    if row.type is None:
        return
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert (error["type"], error["code"]) == (row.type, row.code)


def metrics_of(url: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(url + "/metrics", timeout=30).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_each_ingress_exposes_only_its_own_metrics(base_url, keyed_url):
    shared_before, keyed_before = metrics_of(base_url), metrics_of(keyed_url)
    r = httpx.post(keyed_url + COMPLETIONS, timeout=60, headers={"authorization": f"Bearer {API_KEY}"},
                   json={"model": KEYED_MODEL, "prompt": "Amber", "max_tokens": 3, "ignore_eos": True})
    assert r.status_code == 200, r.text
    shared_after, keyed_after = metrics_of(base_url), metrics_of(keyed_url)
    generated = ("vllm:generation_tokens_total", (("model_name", KEYED_MODEL),))
    assert keyed_after[generated] - keyed_before.get(generated, 0.0) == 3
    assert {labels for _, labels in keyed_after if labels} <= {
        labels for _, labels in keyed_after if ("model_name", KEYED_MODEL) in labels}
    assert not any(("model_name", KEYED_MODEL) in labels for _, labels in shared_after)
    moved = {k for k in shared_after if k[0].endswith("_total") and shared_after[k] != shared_before.get(k, 0.0)}
    assert not moved, moved


def test_metrics_registries_are_per_instance():
    from prometheus_client import REGISTRY

    from deployments.http.api_metrics import APIMetrics
    from engine.outputs import RequestStats

    first, second = APIMetrics("model-a"), APIMetrics("model-a")  # same name, one process
    first.finished(["stop"], [RequestStats(prompt_tokens=7)], 4, 0.1)
    first.request_done("completions", 200)
    text_of = {m: m.exposition().decode() for m in (first, second)}
    assert 'vllm:prompt_tokens_total{model_name="model-a"} 7.0' in text_of[first]
    assert "vllm:prompt_tokens_total{" not in text_of[second]
    assert REGISTRY.get_sample_value("vllm:prompt_tokens_total", {"model_name": "model-a"}) is None
