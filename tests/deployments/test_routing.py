"""Cache-aware routing on real replicas: requests follow the replica holding their documents,
spread when it is saturated, and our router beats Serve's power-of-two and Ray's
PrefixCacheAffinityRouter on chunk-hit rate for a permuted-document workload."""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from router.stats import short_key

from tests.support.serving import SERVED_MODEL, app_config_dict, replica_stats
from tests.support.tiny_chat_model import document

CHAT = "/v1/chat/completions"


def chat_body(docs: list[str], question: str, **fields) -> dict:
    return {"model": SERVED_MODEL, "max_tokens": 4, "temperature": 0,
            "messages": [{"role": "system", "content": "Answer."}, {"role": "user", "content": question}],
            "documents": [{"text": d} for d in docs], **fields}


def test_requests_sharing_documents_follow_their_holder(base_url, builder):
    docs = [document(600 + i) for i in range(3)]
    rng = random.Random(1)
    with httpx.Client(base_url=base_url, timeout=60) as http:
        replicas = []
        for i in range(6):
            order = rng.sample(docs, len(docs))
            r = http.post(CHAT, json=chat_body(order, f"Question {i}?"))
            assert r.status_code == 200, r.text
            replicas.append(r.headers["x-epic-replica"])
    assert len(set(replicas)) == 1, replicas
    held = replica_stats(replicas[0])["gpu"]
    for doc in docs:
        assert {short_key(k) for k in builder.chunk_document(doc).chunk_keys} <= set(held)


def test_saturated_holder_spreads_load(base_url):
    docs = [document(700 + i) for i in range(3)]
    with httpx.Client(base_url=base_url, timeout=120) as http:
        holder = http.post(CHAT, json=chat_body(docs, "Warm up?")).headers["x-epic-replica"]

        def one(i: int) -> str:
            r = http.post(CHAT, json=chat_body(docs[i % 3:] + docs[:i % 3], f"Busy {i}?", max_tokens=48,
                                               ignore_eos=True))
            assert r.status_code == 200, r.text
            return r.headers["x-epic-replica"]

        with ThreadPoolExecutor(10) as pool:
            served = Counter(pool.map(one, range(10)))
    assert len(served) == 2, served  # the holder (4 at a time) could not take them all
    assert served[holder] >= 3, served


# ---- router comparison ------------------------------------------------------------------------

NUM_TOPICS, DOCS_PER_TOPIC, ROUNDS = 8, 3, 5


def permuted_document_workload(seed: int = 3) -> list[tuple[list[str], str]]:
    """Topics of documents; each request: one topic's documents in a random order + a question."""
    rng = random.Random(seed)
    topics = [[document(1000 + 10 * t + d) for d in range(DOCS_PER_TOPIC)] for t in range(NUM_TOPICS)]
    requests = [(t, r) for t in range(NUM_TOPICS) for r in range(ROUNDS)]
    rng.shuffle(requests)
    return [(rng.sample(topics[t], DOCS_PER_TOPIC), f"Question {t}-{r}?") for t, r in requests]


def chunk_hit_rate(serve_url: str, name: str, workload) -> float:
    hits = total = 0
    with httpx.Client(base_url=f"{serve_url}/{name}", timeout=60) as http:
        for docs, question in workload:
            r = http.post(CHAT, json=chat_body(docs, question, max_tokens=1))
            assert r.status_code == 200, r.text
            cache = r.json()["usage"]["cache"]
            hits += cache["chunk_hit_tokens"]
            total += cache["chunk_hit_tokens"] + cache["compiled_tokens"]
    return hits / total


def test_cache_aware_router_beats_baselines_on_chunk_hits(serve_url, tiny_model_dir, tmp_path_factory, builder):
    """Each replica's own chunk pool holds about half the documents and no tier is shared, so a
    chunk hit means the router sent the request where its documents were."""
    from ray import serve
    from ray.serve.api import RunTarget, _run_many

    from deployments.app import build
    from deployments.config import AppConfig

    workload = permuted_document_workload()
    kv_bytes_per_token = 2 * 2 * 2 * 16 * 4  # layers x (K, V) x KV heads x head_dim x float32
    doc_tokens = sum(builder.chunk_document(d).num_tokens for d in {d for docs, _ in workload for d in docs})
    targets = {}
    for router in ("cache_aware", "power_of_two", "prefix_cache_affinity"):
        data = app_config_dict(tiny_model_dir, tmp_path_factory.mktemp(router), request_router=router)
        data["store"] = {"memory_bytes": 0, "object_store_bytes": 0, "persistent": ""}
        data["engine"]["chunk_pool_bytes"] = doc_tokens * kv_bytes_per_token // 2
        name = f"epic-router-{router.replace('_', '-')}"
        targets[router] = RunTarget(build(AppConfig.from_dict(data)), name=name, route_prefix=f"/{name}")
    _run_many(list(targets.values()))  # all three at once: startup is most of this test's time
    try:
        rates = {router: chunk_hit_rate(serve_url, t.name, workload) for router, t in targets.items()}
    finally:
        for t in targets.values():
            serve.delete(t.name)
    print("chunk-hit rate by router:", rates)
    assert rates["cache_aware"] >= 0.6, rates
    assert rates["cache_aware"] > rates["power_of_two"] + 0.1, rates
    assert rates["cache_aware"] > rates["prefix_cache_affinity"] + 0.1, rates
