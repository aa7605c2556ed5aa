"""Every generation request has a deadline (``ingress.request_timeout_s``): past it, a 504 in
OpenAI's shape before the first byte, or an SSE error event after it, and the engine aborts the
request (its KV blocks return). Against the real Serve app with a tiny timeout."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from tests.support.serving import SERVED_MODEL, app_config_dict, replica_actors, replica_load, running_app

APP = "epic-deadline"
TIMEOUT_S = 1.0
BOUND_S = TIMEOUT_S + 5.0  # the error reaches the client within this of the request's start
BODY = {"model": SERVED_MODEL, "prompt": "The harbor at dawn", "max_tokens": 1000, "temperature": 0,
        "ignore_eos": True}


@pytest.fixture(scope="module")
def deadline_url(serve_url, tiny_model_dir, tmp_path_factory):
    raw = app_config_dict(tiny_model_dir, tmp_path_factory.mktemp("deadline-store"), num_replicas=1)
    raw["ingress"]["request_timeout_s"] = TIMEOUT_S
    with running_app(serve_url, raw, APP) as url:
        yield url


def assert_engine_idle(timeout_s: float = 10.0) -> None:
    (actor,) = replica_actors(APP).values()
    deadline = time.monotonic() + timeout_s
    load = replica_load(actor)
    while (load["free_blocks"], load["queue_len"]) != (load["total_blocks"], 0) and time.monotonic() < deadline:
        time.sleep(0.2)
        load = replica_load(actor)
    assert (load["free_blocks"], load["queue_len"]) == (load["total_blocks"], 0)


def test_whole_response_past_its_deadline_is_a_504(deadline_url):
    start = time.monotonic()
    r = httpx.post(deadline_url + "/v1/completions", json=BODY, timeout=60)
    assert time.monotonic() - start < BOUND_S
    assert r.status_code == 504, r.text
    assert r.json() == {"error": {"message": f"the request exceeded its deadline of {TIMEOUT_S:g} s and was aborted",
                                  "type": "timeout", "param": None, "code": "timeout"}}
    assert_engine_idle()


def test_stream_past_its_deadline_ends_with_an_error_event(deadline_url):
    start = time.monotonic()
    events = []
    with httpx.stream("POST", deadline_url + "/v1/completions", json={**BODY, "stream": True}, timeout=60) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert time.monotonic() - start < BOUND_S
    assert events[-1] == "[DONE]"
    tokens = [json.loads(e) for e in events[:-2]]
    assert all(t["choices"][0]["finish_reason"] is None for t in tokens)
    assert len(tokens) < BODY["max_tokens"]
    assert json.loads(events[-2])["error"]["code"] == "timeout"
    assert_engine_idle()


def test_request_timeout_must_be_positive(tiny_model_dir, tmp_path):
    from deployments.config import AppConfig

    raw = app_config_dict(tiny_model_dir, tmp_path)
    raw["ingress"]["request_timeout_s"] = 0
    with pytest.raises(ValueError, match="request_timeout_s must be > 0, got 0"):
        AppConfig.from_dict(raw)
