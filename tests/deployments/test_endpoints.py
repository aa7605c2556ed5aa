"""The service endpoints vLLM's server has: tokenize/detokenize, models with max_model_len,
version, health, and Prometheus metrics on the API port that move by exactly what was sent."""

from __future__ import annotations

import importlib.metadata

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.serving import SERVED_MODEL

LABEL = {"model_name": SERVED_MODEL}


def test_tokenize_and_detokenize(http, reference_engine, builder):
    tok = reference_engine.tokenizer
    r = http.post("/tokenize", json={"model": SERVED_MODEL, "prompt": "The copper lantern"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tokens"] == tok.encode("The copper lantern") and body["count"] == len(body["tokens"])
    assert body["max_model_len"] == 1024
    plain = http.post("/tokenize", json={"prompt": "The copper lantern", "add_special_tokens": False}).json()
    assert plain["tokens"] == tok.encode("The copper lantern", add_special_tokens=False)
    messages = [{"role": "user", "content": "Which river?"}]
    chat = http.post("/tokenize", json={"model": SERVED_MODEL, "messages": messages}).json()
    layout = builder.chat(messages, [])
    assert chat["count"] == layout.routing_hint.total_tokens
    r = http.post("/detokenize", json={"model": SERVED_MODEL, "tokens": plain["tokens"]})
    assert r.json() == {"prompt": "The copper lantern"}
    assert http.post("/detokenize", json={"tokens": [10**6]}).status_code == 400
    assert http.post("/tokenize", json={"model": "other", "prompt": "x"}).status_code == 404


def test_models_and_version(http, base_url):
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0)
    (card,) = client.models.list().data
    assert card.id == SERVED_MODEL and card.model_extra["max_model_len"] == 1024
    assert client.models.retrieve(SERVED_MODEL).model_extra["max_model_len"] == 1024
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")
    assert http.get("/version").json() == {"version": importlib.metadata.version("epic-serve")}


def test_health_asks_the_engine(http):
    r = http.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def scrape(http) -> dict[tuple[str, tuple], float]:
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def delta(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted({**LABEL, **labels}.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_move_by_exactly_what_was_sent(http, reference_engine):
    before = scrape(http)
    prompts = ["Silver timber umbrella", "Wagon yellow zephyr anchor"]
    for prompt in prompts:
        r = http.post("/v1/completions", json={"model": SERVED_MODEL, "prompt": prompt, "max_tokens": 5,
                                               "temperature": 0, "ignore_eos": True})
        assert r.status_code == 200, r.text
    r = http.post("/v1/completions", json={"model": SERVED_MODEL, "prompt": "Bridge candle", "max_tokens": 3,
                                           "n": 2, "ignore_eos": True, "stream": True})
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
    assert http.post("/v1/completions", json={"model": SERVED_MODEL}).status_code == 400
    after = scrape(http)
    num_prompt = sum(len(reference_engine.tokenizer.encode(p)) for p in [*prompts, "Bridge candle"])
    assert delta(before, after, "vllm:prompt_tokens_total") == num_prompt
    assert delta(before, after, "vllm:generation_tokens_total") == 5 + 5 + 3 * 2
    assert delta(before, after, "vllm:request_success_total", finished_reason="length") == 4  # sequences
    assert delta(before, after, "vllm:e2e_request_latency_seconds_count") == 3
    assert delta(before, after, "vllm:time_to_first_token_seconds_count") == 3
    assert delta(before, after, "epic:requests_total", endpoint="completions", status="200") == 3
    assert delta(before, after, "epic:requests_total", endpoint="completions", status="400") == 1
    assert delta(before, after, "vllm:prefix_cache_queries_total") == num_prompt
    hits = delta(before, after, "vllm:prefix_cache_hits_total")
    recomputed = delta(before, after, "epic:recomputed_tokens_total")
    assert hits + recomputed == num_prompt  # no documents: every prompt token is a prefix hit or computed
    assert after["vllm:num_requests_running", tuple(LABEL.items())] == 0
    assert after["vllm:num_requests_waiting", tuple(LABEL.items())] == 0
    assert 0.0 <= after["vllm:kv_cache_usage_perc", tuple(LABEL.items())] < 1.0
