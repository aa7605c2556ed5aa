"""Hostile HTTP clients against the real Serve app: a body trickled slower than the ingress
waits for gets a 408, oversized headers a 431, a client that never reads its stream holds the
engine no longer than its completion takes, and the app serves normally afterwards."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest
from tests.support.serving import app_config_dict, replica_actors, replica_load, running_app

APP, PREFIX, MODEL = "epic-hostile", "/epic-hostile", "epic-hostile"
BODY_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def hostile_url(serve_url, tiny_model_dir, tmp_path_factory) -> str:
    raw = app_config_dict(tiny_model_dir, tmp_path_factory.mktemp("hostile-store"), num_replicas=1)
    raw["ingress"].update(served_model_name=MODEL, body_timeout_s=BODY_TIMEOUT_S)
    with running_app(serve_url, raw, APP) as url:
        yield url


def raw_request(url: str, head: bytes, body_parts: list[bytes], pause_s: float, timeout_s: float = 30) -> bytes:
    """Send ``head``, then each body part ``pause_s`` apart; return what the server answered."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s) as s:
        s.sendall(head)
        try:
            for part in body_parts:
                time.sleep(pause_s)
                s.sendall(part)
        except OSError:  # the server answered and closed while we were still sending
            pass
        answer = b""
        while chunk := s.recv(65536):  # until the server closes (Connection: close)
            answer += chunk
    return answer


def test_a_trickled_body_gets_408_within_the_body_timeout(hostile_url):
    body = b'{"model": "epic-hostile", "prompt": "river stone", "max_tokens": 2}'
    head = (f"POST {PREFIX}/v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    start = time.monotonic()
    answer = raw_request(hostile_url, head, [body[i:i + 4] for i in range(0, len(body), 4)], pause_s=0.4)
    elapsed = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b'"code":"request_timeout"' in answer
    assert elapsed < BODY_TIMEOUT_S + 3, elapsed


@pytest.mark.parametrize("method,path", [("GET", "/v1/models"), ("POST", "/tokenize"), ("POST", "/detokenize")])
def test_oversized_headers_are_refused(hostile_url, method, path):
    body = b'{"prompt": "hi"}' if path == "/tokenize" else b'{"tokens": [1]}'
    head = (f"{method} {PREFIX}{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {'a' * 200_000}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    answer = raw_request(hostile_url, head, [body] if method == "POST" else [], pause_s=0)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b'"code":"request_header_fields_too_large"' in answer


def test_a_client_that_never_reads_holds_nothing_past_its_completion(hostile_url):
    """The engine finishes the completion and frees its KV while the client reads nothing: what
    waits for the client is the completion's own text (bounded by max_tokens), not engine state."""
    body = (b'{"model": "epic-hostile", "prompt": "river stone", "max_tokens": 300, "stream": true, '
            b'"ignore_eos": true, "stream_options": {"include_usage": true}}')
    head = (f"POST {PREFIX}/v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    (actor,) = replica_actors(APP).values()
    parts = urlsplit(hostile_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: little is in flight
        s.sendall(head + body)
        deadline = time.monotonic() + 60
        time.sleep(1.0)
        while (load := replica_load(actor))["queue_len"] or load["free_blocks"] != load["total_blocks"]:
            assert time.monotonic() < deadline, f"the engine still holds the request: {load}"
            time.sleep(0.2)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")
    events = [line for line in answer.split(b"\n") if line.startswith(b"data: ")]
    assert events[-1] == b"data: [DONE]"
    assert json.loads(events[-2][len(b"data: "):])["usage"]["completion_tokens"] == 300


def test_the_app_serves_after_hostile_clients(hostile_url):
    response = httpx.post(f"{hostile_url}/v1/completions", timeout=60,
                          json={"model": MODEL, "prompt": "river stone", "max_tokens": 2, "temperature": 0})
    assert response.status_code == 200 and response.json()["usage"]["completion_tokens"] == 2
