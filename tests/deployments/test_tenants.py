"""Tenants and cache_salt against the real Serve app: API keys mapped to tenants in the config;
a tenant's chunk and prefix caches and its registered documents are its own; unsalted requests
share only with unsalted ones; the warm-up job warms a corpus for one tenant."""

from __future__ import annotations

import json

import httpx
import pytest
from tests.support.serving import app_config_dict, running_app
from tests.support.tiny_chat_model import document

TENANT_APP, TENANT_MODEL = "epic-tenants", "epic-tenants"
KEYS = {"alice": "key-alice", "bob": "key-bob"}
SHARED_KEY = "key-shared"  # ingress.api_key: no tenant
# A system turn of several KV blocks: the prefix cache has whole blocks to share (or not).
QUESTION = [{"role": "system", "content": document(30, num_sentences=5)}, {"role": "user", "content": "Which harbor?"}]


@pytest.fixture(scope="module")
def tenant_app(serve_url, tiny_model_dir, tmp_path_factory):
    """An app with two tenants and a shared key, one engine replica; (url, config path)."""
    import yaml

    raw = app_config_dict(tiny_model_dir, tmp_path_factory.mktemp("tenant-store"), num_replicas=1)
    raw["ingress"].update(served_model_name=TENANT_MODEL, api_key=SHARED_KEY,
                          api_keys={key: tenant for tenant, key in KEYS.items()})
    path = tmp_path_factory.mktemp("tenant-config") / "serve.yaml"
    path.write_text(yaml.safe_dump(raw))
    with running_app(serve_url, raw, TENANT_APP) as url:
        yield url, path


def client(tenant_app, key: str) -> httpx.Client:
    return httpx.Client(base_url=tenant_app[0], timeout=60, headers={"Authorization": f"Bearer {key}"})


def ask(http: httpx.Client, documents: list[dict], **fields) -> dict:
    response = http.post("/v1/chat/completions", json={"model": TENANT_MODEL, "max_tokens": 4, "temperature": 0,
                                                       "messages": QUESTION, "documents": documents, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def test_keys_are_required_and_each_names_its_tenant(tenant_app):
    with httpx.Client(base_url=tenant_app[0], timeout=30) as anonymous:
        assert anonymous.get("/v1/models").status_code == 401
    for key in (*KEYS.values(), SHARED_KEY):
        with client(tenant_app, key) as http:
            assert http.get("/v1/models").status_code == 200
    with client(tenant_app, "key-mallory") as http:
        assert http.get("/v1/models").json()["error"]["code"] == "invalid_api_key"


def test_tenants_share_no_chunk_or_prefix_cache(tenant_app):
    docs = [{"text": document(31, num_sentences=6)}]
    with client(tenant_app, KEYS["alice"]) as alice, client(tenant_app, KEYS["bob"]) as bob, \
            client(tenant_app, SHARED_KEY) as shared:
        first = ask(alice, docs)["usage"]
        tokens = first["cache"]["compiled_tokens"]
        assert tokens > 0 and first["cache"]["chunk_hit_tokens"] == 0
        again = ask(alice, docs)["usage"]["cache"]
        assert (again["compiled_tokens"], again["chunk_hit_tokens"]) == (0, tokens)
        assert again["prefix_hit_tokens"] > 0
        # The same text from another tenant, or from no tenant: nothing of alice's is visible.
        for other in (bob, shared):
            cache = ask(other, docs)["usage"]["cache"]
            assert (cache["compiled_tokens"], cache["chunk_hit_tokens"], cache["prefix_hit_tokens"]) == (tokens, 0, 0)
        # A salt is a scope of its own, inside a tenant too; the same salt again shares.
        salted = ask(alice, docs, cache_salt="s1")["usage"]["cache"]
        assert (salted["compiled_tokens"], salted["chunk_hit_tokens"], salted["prefix_hit_tokens"]) == (tokens, 0, 0)
        assert ask(alice, docs, cache_salt="s1")["usage"]["cache"]["chunk_hit_tokens"] == tokens
        assert ask(alice, docs)["usage"]["cache"]["chunk_hit_tokens"] == tokens  # unsalted: alice's own


def test_a_tenant_cannot_see_read_use_or_delete_anothers_documents(tenant_app):
    text = document(32, num_sentences=6)
    with client(tenant_app, KEYS["alice"]) as alice, client(tenant_app, KEYS["bob"]) as bob:
        registered = alice.post("/v1/documents", json={"documents": [{"id": "manual", "text": text}]})
        assert registered.status_code == 200, registered.text
        assert [d["id"] for d in alice.get("/v1/documents").json()["data"]] == ["manual"]
        assert bob.get("/v1/documents").json()["data"] == []
        for response in (bob.get("/v1/documents/manual"), bob.delete("/v1/documents/manual"),
                         bob.post("/v1/chat/completions", json={"model": TENANT_MODEL, "max_tokens": 2,
                                                                "messages": QUESTION, "documents": [{"id": "manual"}]})):
            assert response.status_code == 404 and response.json()["error"]["code"] == "document_not_found"
        by_id = ask(alice, [{"id": "manual"}])["usage"]["cache"]
        assert by_id["compiled_tokens"] == 0 and by_id["chunk_hit_tokens"] > 0
        # Bob registers his own "manual": the two never mix.
        assert bob.post("/v1/documents", json={"documents": [{"id": "manual", "text": "Other text."}]}).status_code == 200
        assert alice.get("/v1/documents/manual").json()["num_tokens"] == registered.json()["data"][0]["num_tokens"]
        assert bob.delete("/v1/documents/manual").status_code == 200
        assert alice.get("/v1/documents/manual").status_code == 200


def test_the_warmup_job_warms_a_corpus_for_one_tenant(tenant_app, tmp_path):
    from deployments.config import load_config
    from warmup.job import WarmupOptions, run_warmup

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "handbook", "text": document(33, num_sentences=6)}) + "\n")
    config = load_config(tenant_app[1])
    summary = run_warmup(WarmupOptions(corpus=str(corpus), config=tenant_app[1], workers=1, device="cpu",
                                       progress=False, tenant="bob"))
    assert summary.counts.documents == 1 and summary.counts.failed == 0
    assert config.ingress.api_keys[KEYS["bob"]] == "bob"
    with client(tenant_app, KEYS["bob"]) as bob, client(tenant_app, KEYS["alice"]) as alice:
        cache = ask(bob, [{"id": "handbook"}])["usage"]["cache"]
        assert cache["compiled_tokens"] == 0 and cache["chunk_hit_tokens"] > 0  # compiled by the warm-up
        assert alice.get("/v1/documents/handbook").status_code == 404
