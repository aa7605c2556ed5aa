"""An engine replica killed mid-stream (its actor killed with ``ray.kill``, or its process sent
SIGKILL) against the real Serve app: its streams end within a bound with an SSE error event in
OpenAI's shape, the other replica's streams finish with the tokens of a fault-free run, Serve
brings a replacement up, and the replacement links every registered document's chunks from the
store (no compiles)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from dataclasses import dataclass

import httpx
import pytest
import ray
from tests.support.serving import SERVED_MODEL, app_config_dict, replica_actors, replica_pid
from tests.support.tiny_chat_model import document

APP = "epic-faults"
PREFIX = "/epic-faults"
MAX_ONGOING = 2  # 4 streams on 2 replicas: 2 on each
NUM_STREAMS = 4
MAX_TOKENS = 400
END_BOUND_S = 30.0  # a killed replica's streams end within this of the kill
REPLACE_BOUND_S = 120.0
PROMPTS = tuple(f"Stream {i}: the lantern by the copper harbor" for i in range(NUM_STREAMS))
DOC_ID = "fault-manual"


@dataclass(slots=True)
class Stream:
    replica: str = ""
    text: str = ""
    finish_reason: str | None = None
    error: dict | None = None
    done: bool = False
    ended_at: float = 0.0


def completion(prompt: str, stream: bool) -> dict:
    return {"model": SERVED_MODEL, "prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0,
            "ignore_eos": True, "stream": stream}


@pytest.fixture(scope="module")
def faults_url(serve_url, tiny_model_dir, tmp_path_factory):
    from ray import serve

    from deployments.app import build
    from deployments.config import AppConfig

    config = AppConfig.from_dict(app_config_dict(tiny_model_dir, tmp_path_factory.mktemp("faults-store"),
                                                 max_ongoing_requests=MAX_ONGOING, health_check_period_s=1.0))
    serve.run(build(config), name=APP, route_prefix=PREFIX)
    yield serve_url + PREFIX
    serve.delete(APP)


@pytest.fixture(scope="module")
def fault_free(faults_url) -> dict[str, str]:
    """Each prompt's greedy completion, the 4 at once as in the faulted run, and the registered
    document (before any kill)."""

    async def run() -> list[str]:
        async with httpx.AsyncClient(base_url=faults_url, timeout=300) as http:
            rs = await asyncio.gather(*(http.post("/v1/completions", json=completion(p, False)) for p in PROMPTS))
        return [r.json()["choices"][0]["text"] for r in rs]

    registered = httpx.post(faults_url + "/v1/documents", timeout=120,
                            json={"documents": [{"id": DOC_ID, "text": document(900, 10)}]})
    assert registered.status_code == 200 and registered.json()["persisted"] is True, registered.text
    return dict(zip(PROMPTS, asyncio.run(run())))


async def consume(http: httpx.AsyncClient, prompt: str, out: Stream, started: asyncio.Event) -> None:
    async with http.stream("POST", "/v1/completions", json=completion(prompt, True)) as r:
        assert r.status_code == 200, await r.aread()
        out.replica = r.headers["x-epic-replica"]
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                out.done = True
                break
            event = json.loads(line[6:])
            if "error" in event:
                out.error = event["error"]
                continue
            out.text += event["choices"][0]["text"]
            out.finish_reason = event["choices"][0]["finish_reason"] or out.finish_reason
            started.set()
    out.ended_at = time.monotonic()


def kill(victim: str, how: str) -> None:
    actor = replica_actors(APP)[victim]
    if how == "ray_kill":
        ray.kill(actor, no_restart=True)
    else:
        os.kill(replica_pid(actor), signal.SIGKILL)


async def streams_across_a_kill(url: str, how: str) -> tuple[list[Stream], str, float]:
    """4 streams, 2 per replica; once each has tokens, the first one's replica is killed."""
    outs = [Stream() for _ in PROMPTS]
    started = [asyncio.Event() for _ in PROMPTS]
    async with httpx.AsyncClient(base_url=url, timeout=300) as http:
        tasks = [asyncio.create_task(consume(http, p, o, s)) for p, o, s in zip(PROMPTS, outs, started)]
        await asyncio.wait_for(asyncio.gather(*(s.wait() for s in started)), 60)
        assert all(not o.done for o in outs), "a stream finished before the kill: raise MAX_TOKENS"
        victim = outs[0].replica
        killed_at = time.monotonic()
        await asyncio.to_thread(kill, victim, how)
        await asyncio.wait_for(asyncio.gather(*tasks), END_BOUND_S + 300)
    return outs, victim, killed_at


def wait_replaced(victim: str) -> dict:
    """The live replica actors once Serve runs 2 replicas again, ``victim`` not among them."""
    deadline = time.monotonic() + REPLACE_BOUND_S
    while time.monotonic() < deadline:
        live = replica_actors(APP)
        if len(live) == 2 and victim not in live:
            from ray import serve

            states = serve.status().applications[APP].deployments["EngineReplica"].replica_states
            if states.get("RUNNING") == 2:
                return live
        time.sleep(0.5)
    pytest.fail(f"Serve did not replace replica {victim} within {REPLACE_BOUND_S} s")


@pytest.mark.parametrize("how", ["ray_kill", "sigkill"])
def test_killed_replica_ends_its_streams_and_is_replaced(faults_url, fault_free, how):
    before = set(replica_actors(APP))
    outs, victim, killed_at = asyncio.run(streams_across_a_kill(faults_url, how))

    assert {o.replica for o in outs} == before and sum(o.replica == victim for o in outs) == 2
    for o in outs:
        if o.replica == victim:  # ended in bounded time with an error event, then [DONE]
            assert o.error is not None and o.error["code"] == "replica_failed", o
            assert o.error["type"] == "server_error" and o.done
            assert o.ended_at - killed_at < END_BOUND_S
        else:  # unaffected: the tokens of the fault-free run
            assert (o.error, o.finish_reason, o.done) == (None, "length", True)
    assert [o.text for o in outs if o.replica != victim] == [
        fault_free[p] for p, o in zip(PROMPTS, outs) if o.replica != victim]

    live = wait_replaced(victim)
    (new,) = set(live) - before
    # The registered document, by id, on the replacement: every chunk a store hit, none compiled.
    seen = {}
    for _ in range(10):
        rs = asyncio.run(by_id_burst(faults_url))
        for r in rs:
            assert r.status_code == 200, r.text
            seen.setdefault(r.headers["x-epic-replica"], []).append(r.json()["usage"]["cache"])
        if new in seen:
            break
    assert new in seen, f"no request by id reached the replacement {new}: {sorted(seen)}"
    for cache in [c for caches in seen.values() for c in caches]:
        assert cache["compiled_tokens"] == 0 and cache["chunk_hit_tokens"] > 0, cache


async def by_id_burst(url: str) -> list[httpx.Response]:
    """More requests naming the document than one replica takes at once (some reach each)."""
    body = {"model": SERVED_MODEL, "max_tokens": 4, "temperature": 0, "documents": [{"id": DOC_ID}],
            "messages": [{"role": "user", "content": "Which harbor?"}]}
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        return list(await asyncio.gather(*(http.post("/v1/chat/completions", json=body)
                                           for _ in range(2 * MAX_ONGOING + 2))))
