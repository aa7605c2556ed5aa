"""The documents API: register (compile + store), look up, use by id, delete."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from kvstore.keys import chunk_object_name

from tests.support.serving import SERVED_MODEL
from tests.support.tiny_chat_model import document


def store_dir(app_config) -> Path:
    return Path(app_config.store.location.path)


def chat_with(http, documents: list[dict], **fields) -> httpx.Response:
    return http.post("/v1/chat/completions", json={
        "model": SERVED_MODEL, "max_tokens": 8, "temperature": 0,
        "messages": [{"role": "user", "content": "Which market?"}], "documents": documents, **fields})


def test_register_lookup_use_delete(http, builder, app_config):
    texts = {"manual/a b": document(500, 12), "notes-b": document(501)}
    r = http.post("/v1/documents", json={"documents": [{"id": i, "text": t} for i, t in texts.items()]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["persisted"] is True
    by_id = {d["id"]: d for d in body["data"]}
    assert list(by_id) == list(texts)
    for doc_id, text in texts.items():
        expected = builder.chunk_document(text)
        assert by_id[doc_id]["chunk_keys"] == list(expected.chunk_keys)  # ingress, replica and test agree
        assert by_id[doc_id]["chunk_token_counts"] == expected.chunk_token_counts
        assert by_id[doc_id]["num_tokens"] == expected.num_tokens
        for key in expected.chunk_keys:
            assert (store_dir(app_config) / chunk_object_name(key)).is_file()
    assert len(by_id["manual/a b"]["chunk_keys"]) > 1  # a long document is several chunks

    looked_up = http.get("/v1/documents/manual/a b").json()
    assert looked_up == by_id["manual/a b"]
    assert {"manual/a b", "notes-b"} <= {d["id"] for d in http.get("/v1/documents").json()["data"]}

    by_ref = chat_with(http, [{"id": "manual/a b"}, {"text": texts["notes-b"]}])
    by_text = chat_with(http, [{"text": texts["manual/a b"]}, {"text": texts["notes-b"]}])
    assert by_ref.status_code == 200, by_ref.text
    usage = by_ref.json()["usage"]
    assert usage["cache"]["compiled_tokens"] == 0
    assert usage["cache"]["chunk_hit_tokens"] == sum(d["num_tokens"] for d in by_id.values())
    assert by_ref.json()["choices"][0]["message"]["content"] == by_text.json()["choices"][0]["message"]["content"]

    assert http.delete("/v1/documents/notes-b").json() == {"id": "notes-b", "object": "document", "deleted": True}
    assert http.get("/v1/documents/notes-b").status_code == 404
    missing = http.delete("/v1/documents/notes-b")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "document_not_found"
    gone = chat_with(http, [{"id": "notes-b"}])
    assert gone.status_code == 404 and gone.json()["error"]["param"] == "documents[0].id"


def test_registered_document_without_token_ids_is_a_clear_error(http, app_config):
    r = http.post("/v1/documents", json={"documents": [{"id": "fragile", "text": document(510)}]})
    assert r.status_code == 200
    key = r.json()["data"][0]["chunk_keys"][0]
    ids_file = store_dir(app_config) / "chunk-ids" / key[:2] / f"{key}.ids"
    assert ids_file.is_file()
    ids_file.unlink()
    broken = chat_with(http, [{"id": "fragile"}])
    assert broken.status_code == 409
    assert broken.json()["error"]["code"] == "document_incomplete"


@pytest.mark.parametrize("body,param", [
    ({"documents": []}, "documents"),
    ({"documents": [{"id": "x"}]}, "documents[0].text"),
    ({"documents": [{"id": "x", "text": " "}]}, "documents[0].text"),
    ({"documents": [{"id": "", "text": "a"}]}, "documents[0].id"),
    ({"documents": [{"id": "x", "text": "a"}, {"id": "x", "text": "b"}]}, "documents"),
    ({"documents": [{"id": "x" * 300, "text": "a"}]}, "documents.id"),
])
def test_bad_registrations(http, body, param):
    r = http.post("/v1/documents", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
