"""`make serve` in a subprocess: it starts on the embedded default (epic-tiny), says where it
listens, answers document questions correctly, and stops cleanly on SIGTERM leaving no process
behind."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
from serving_helpers import free_port

from infra.model.data import Generator

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 240
QUESTIONS_SEED = 5


def children(pid: int) -> list[int]:
    """All descendants of ``pid`` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_make_serve_starts_answers_and_stops():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # -o: the venv exists already (reinstalling would need the network).
    proc = subprocess.Popen(["make", "-s", "-o", ".venv/.installed", "serve",
                             f"ARGS=--port {port}"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen = []
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        banner = f"epic-serve listening on http://127.0.0.1:{port}"
        while not any(banner in line for line in seen):
            assert proc.poll() is None, "".join(seen)
            assert time.monotonic() < deadline, "no startup line:\n" + "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        assert "(model epic-tiny, 1 replica)" in next(line for line in seen if banner in line)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/completions",
                       json={"model": "epic-tiny", "prompt": "Once upon a time", "max_tokens": 5}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] >= 1
        # Held-out questions (entities training never saw), answered from their documents.
        # The `full` link policy: epic-tiny answers 92.6% of held-out questions with it and far
        # fewer through linked chunks (models/epic-tiny/MODEL_CARD.md).
        for ex in Generator(QUESTIONS_SEED, "heldout").examples(3):
            body = {"model": "epic-tiny", "max_tokens": 16, "temperature": 0, "link_policy": {"name": "full"},
                    "messages": [{"role": "user", "content": ex.question}],
                    "documents": [{"text": d} for d in ex.documents]}
            r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=60)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"].strip() == ex.answer, ex
    finally:
        family = children(proc.pid)
        epic = [pid for pid in family if b"bin/epic\0serve" in cmdline(pid)]
        assert len(epic) == 1, "".join(seen)
        os.kill(epic[0], signal.SIGTERM)
        code = proc.wait(timeout=90)
        while not lines.empty():
            seen.append(lines.get())
        assert code == 0, "".join(seen)
        assert any("epic-serve stopping" in line for line in seen), "".join(seen)
        deadline = time.monotonic() + 60
        while any(alive(pid) for pid in family) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [pid for pid in family if alive(pid)], "processes left behind"
