"""Position-independent reuse through the HTTP API: documents compiled once are linked again in
any order, behind any prefix, from either endpoint."""

from __future__ import annotations

import pytest

from tests.support.serving import SERVED_MODEL
from tests.support.tiny_chat_model import document

CHAT = "/v1/chat/completions"


def ask(http, system: str, docs: list[str], question: str, **fields):
    r = http.post(CHAT, json={
        "model": SERVED_MODEL, "max_tokens": 6, "temperature": 0,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
        "documents": [{"text": d} for d in docs], **fields})
    assert r.status_code == 200, r.text
    return r


def test_reordered_documents_after_another_prefix_are_all_cached(http, builder):
    docs = [document(200 + i) for i in range(3)]
    doc_tokens = sum(builder.chunk_document(d).num_tokens for d in docs)
    first = ask(http, "Answer briefly.", docs, "Which harbor?")
    assert first.json()["usage"]["cache"]["compiled_tokens"] == doc_tokens

    again = ask(http, "You are terse and exact.", [docs[2], docs[0], docs[1]], "Which lantern?")
    usage = again.json()["usage"]
    assert usage["cache"]["compiled_tokens"] == 0
    assert usage["cache"]["chunk_hit_tokens"] == doc_tokens
    assert usage["prompt_tokens_details"]["cached_tokens"] >= doc_tokens
    # The router sent it where the chunks are: linked straight from the engine's chunk pool.
    assert again.headers["x-epic-replica"] == first.headers["x-epic-replica"]
    assert usage["cache"]["chunk_hits_by_tier"] == {"gpu": doc_tokens}


@pytest.mark.parametrize("policy", [{"name": "legolink", "k": 1000}, {"name": "cacheblend", "ratio": 1.0}])
def test_full_recompute_policies_equal_full(http, policy):
    docs = [document(300 + i) for i in range(3)]
    ask(http, "Answer briefly.", docs, "Warm the cache.")
    reordered = [docs[1], docs[2], docs[0]]
    linked = ask(http, "Answer.", reordered, "Which valley?", max_tokens=12, link_policy=policy).json()
    full = ask(http, "Answer.", reordered, "Which valley?", max_tokens=12, link_policy={"name": "full"}).json()
    assert linked["usage"]["cache"]["chunk_hit_tokens"] > 0
    assert full["usage"]["cache"]["chunk_hit_tokens"] == 0
    assert linked["choices"][0]["message"]["content"] == full["choices"][0]["message"]["content"]


def test_documents_are_shared_between_endpoints(http, builder):
    doc = document(400)
    r = http.post("/v1/completions", json={"model": SERVED_MODEL, "prompt": " Question: ?\nAnswer:", "max_tokens": 2,
                                           "documents": [{"text": doc}]})
    assert r.status_code == 200
    assert r.json()["usage"]["cache"]["compiled_tokens"] == builder.chunk_document(doc).num_tokens
    usage = ask(http, "Answer briefly.", [doc], "Which one?").json()["usage"]
    assert usage["cache"]["compiled_tokens"] == 0
    assert usage["cache"]["chunk_hit_tokens"] == builder.chunk_document(doc).num_tokens
