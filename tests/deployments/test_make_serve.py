"""`make serve` in a subprocess: it starts on the embedded default (SmolLM2-135M-Instruct), says
where it listens, answers document questions with the fact asked for under `full` and under
the default link policy, and stops cleanly on SIGTERM leaving no process behind (checked when
the session's `make serve` fixture is torn down)."""

from __future__ import annotations

import httpx
import pytest

MODEL = "smollm2-135m-instruct"
# Questions whose answer SmolLM2 reads from the documents (the fact must appear in the answer).
CASES = [
    ("Where does the ferry leave from?", ["The ferry leaves from the north harbor at nine.",
                                          "The harbor has a copper lantern on its pier."], "north harbor"),
    ("What is on the pier?", ["The harbor has a copper lantern on its pier.",
                              "The ferry leaves from the north harbor at nine."], "copper lantern"),
    ("Where does Tobin Harle live?", ["Vela Morn lives in Ostrin. Vela Morn works as a pilot.",
                                      "Tobin Harle lives in Quarry Bay. Tobin Harle is 41 years old."], "quarry bay"),
]


def test_startup_line_names_the_default_model(make_serve):
    assert f"(model {MODEL}, 1 replica)" in make_serve.banner
    models = httpx.get(f"{make_serve.url}/v1/models", timeout=30).json()
    assert [m["id"] for m in models["data"]] == [MODEL]


@pytest.mark.parametrize("policy", [{"name": "full"}, None], ids=["full", "default"])
def test_document_questions_are_answered_with_the_fact(make_serve, policy):
    for question, docs, fact in CASES:
        body = {"model": MODEL, "max_tokens": 24, "temperature": 0,
                "messages": [{"role": "user", "content": question}], "documents": [{"text": d} for d in docs]}
        if policy:
            body["link_policy"] = policy
        r = httpx.post(f"{make_serve.url}/v1/chat/completions", json=body, timeout=120)
        assert r.status_code == 200, r.text
        assert fact in r.json()["choices"][0]["message"]["content"].lower(), (question, r.json())
    r = httpx.post(f"{make_serve.url}/v1/completions", json={"model": MODEL, "prompt": "The capital of France is",
                                                             "max_tokens": 5, "temperature": 0}, timeout=60)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1, r.text
