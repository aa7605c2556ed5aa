"""The warm-up job on the session's real Ray: a run killed halfway (its own process, SIGKILL) is
finished by a second run without recompiling what reached the store; the store then holds every
document as the documents API registers it; a third run skips everything; and the serving app
answers requests naming the documents by id from stored chunks alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from deployments.config import load_config
from warmup.job import WarmupOptions, main, run_warmup, start_workers
from kvstore.keys import key_from_object_name

from tests.support.processes import alive
from tests.support.warmup import CHUNK_TOKENS, app_config_dict, corpus_documents, write_config, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
NUM_DOCS = 300
BAD_LINES = [b'{"text": "no id"}', b'{"id": "x-empty", "text": ""}', b'{"id": "x-latin1", "text": "caf\xe9"}',
             b'{"id": "x-cut", "text": "trunc']


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return corpus_documents(NUM_DOCS, seed=1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, docs) -> Path:
    """The documents, with a few bad records mixed in."""
    path = write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", docs)
    lines = path.read_bytes().splitlines()
    for i, bad in enumerate(BAD_LINES):
        lines.insert(40 * i + 7, bad)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture(scope="module")
def builder(tiny_model_dir):
    from deployments.model_files import fingerprint_of, tokenizer_of
    from deployments.prompting import PromptBuilder
    from engine import EngineConfig

    config = EngineConfig(model=str(tiny_model_dir), dtype="float32")
    return PromptBuilder(tokenizer_of(config), fingerprint_of(config), CHUNK_TOKENS)


@pytest.fixture(scope="module")
def expected(builder, docs) -> dict[str, tuple]:
    """doc id -> its chunk keys, as the ingress computes them."""
    return {d["id"]: builder.chunk_document(d["text"]).chunk_keys for d in docs}


def stored_chunks(store: Path) -> dict[str, tuple[int, int]]:
    """chunk key -> (inode, mtime) of every chunk file in a directory store."""
    out = {}
    for path in (store / "chunks").glob("*/*.kv"):
        key = key_from_object_name(str(path.relative_to(store)))
        assert key is not None, path
        st = path.stat()
        out[key] = (st.st_ino, st.st_mtime_ns)
    return out


def registry(config_path: Path):
    from deployments.model_files import fingerprint_of
    from tests.support.store import open_registry

    config = load_config(config_path)
    return open_registry(config.store, fingerprint_of(config.engine))


def options(corpus: Path, config: Path, **kw) -> WarmupOptions:
    return WarmupOptions(corpus=str(corpus), config=config, progress=False, batch_docs=16, **kw)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir) -> tuple[Path, Path]:
    """(config file, its directory store)."""
    tmp = tmp_path_factory.mktemp("warmup-job")
    store = tmp / "store"
    return write_config(tmp / "config.yaml", app_config_dict(tiny_model_dir, f"dir://{store}")), store


@pytest.fixture(scope="module")
def pool(ray_session, setup, corpus):
    """One worker for every in-process run of this module (workers take seconds to start)."""
    config, _ = setup
    pool = start_workers(load_config(config), options(corpus, config))
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def killed(ray_session, setup, corpus):
    """A job run in its own process, killed once it has registered some documents.

    Returns (documents registered, chunk key -> (inode, mtime) of the chunks stored) at the end.
    """
    config, store = setup
    reg = registry(config)
    proc = subprocess.Popen(
        [sys.executable, "-m", "warmup.job", "--corpus", str(corpus), "--config", str(config), "--no-progress",
         "--batch-docs", "8", "--address", ray_session.get_runtime_context().gcs_address],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(reg.list_ids()) < 60:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the warm-up registered nothing in time"
            time.sleep(0.05)
    finally:
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait()
    _wait_until_workers_gone(ray_session.get_runtime_context())
    return _stable_count(reg), stored_chunks(store)


@pytest.fixture(scope="module")
def resumed(setup, corpus, pool, killed):
    """The summary of the run that finished the killed job's work, and its problem log."""
    config, _ = setup
    errors = config.parent / "errors.jsonl"
    return run_warmup(options(corpus, config, errors=errors), pool=pool), errors


def test_killed_run_resumes_without_recompiling(setup, expected, killed, resumed):
    _, store = setup
    registered_at_kill, done = killed
    distinct = {k for keys in expected.values() for k in keys}
    assert 0 < registered_at_kill < NUM_DOCS, "the job was not killed halfway"
    assert 0 < len(done) < len(distinct)
    c = resumed[0].counts
    assert (c.documents, c.documents_new, c.failed) == (NUM_DOCS, NUM_DOCS - registered_at_kill, 0)
    assert (c.chunks, c.chunks_skipped, c.chunks_compiled, c.chunks_failed) == \
        (len(distinct), len(done), len(distinct) - len(done), 0)
    after = stored_chunks(store)
    assert set(after) == distinct
    assert {k: after[k] for k in done} == done  # no chunk stored before the kill was written again


def test_the_store_holds_every_document_as_the_api_registers_it(setup, resumed, expected, builder, docs):
    config, store = setup
    summary, errors = resumed
    c = summary.counts
    assert c.bad_records == len(BAD_LINES) and summary.device == "cpu" and summary.workers == 1
    token_counts = {k: n for d in docs
                    for k, n in zip(expected[d["id"]], builder.chunk_document(d["text"]).chunk_token_counts)}
    assert c.tokens == sum(token_counts.values())
    assert c.bytes_written > 0
    reg = registry(config)
    assert reg.list_ids() == sorted(expected)
    for doc in docs:
        record = reg.get(doc["id"])
        assert tuple(record.chunk_keys) == expected[doc["id"]]
        assert record.chunk_token_counts == [token_counts[k] for k in expected[doc["id"]]]
    problems = [json.loads(line) for line in errors.read_text().splitlines()]
    assert [(p["kind"], p["reason"].split(" (")[0].split(":")[0]) for p in problems] == \
        [("bad_record", r) for r in ("missing 'id'", "empty 'text'", "not UTF-8", "invalid JSON")]


def test_second_run_skips_everything(setup, corpus, pool, resumed):
    config, store = setup
    before = stored_chunks(store)
    c = run_warmup(options(corpus, config), pool=pool).counts
    assert (c.documents, c.documents_new, c.failed, c.bad_records) == (NUM_DOCS, 0, 0, len(BAD_LINES))
    assert (c.chunks_compiled, c.chunks_skipped, c.tokens_compiled, c.bytes_written) == \
        (0, resumed[0].counts.chunks, 0, 0)
    assert stored_chunks(store) == before  # nothing rewritten


def test_requests_by_id_link_every_chunk_from_the_store(serve_url, setup, resumed, docs):
    """The serving app, pointed at the warmed store, compiles nothing for documents named by id."""
    from ray import serve

    from deployments.app import build

    config, _ = setup
    serve.run(build(load_config(config)), name="warmup-test", route_prefix="/warmup-test")
    try:
        url = f"{serve_url}/warmup-test/v1/completions"
        picked = [docs[i]["id"] for i in (3, 150, 299, 42)]
        body = {"model": "epic-tiny", "prompt": " Question: which river?\nAnswer:", "max_tokens": 4,
                "temperature": 0, "documents": [{"id": i} for i in picked]}
        reply = httpx.post(url, json=body, timeout=120)
        assert reply.status_code == 200, reply.text
        cache = reply.json()["usage"]["cache"]
        doc_tokens = sum(registry(config).get(i).num_tokens for i in picked)
        assert cache["compiled_tokens"] == 0
        assert cache["chunk_hit_tokens"] == doc_tokens
        assert cache["chunk_hits_by_tier"] == {"dir": doc_tokens}
    finally:
        serve.delete("warmup-test")


def test_cli_reports_a_bad_invocation(tmp_path, capsys):
    from deployments.cli import main as epic

    assert main(["--corpus", str(tmp_path / "missing.jsonl"), "--no-progress"]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert epic(["warmup", "--corpus", str(tmp_path / "missing.jsonl"), "--no-progress"]) == 2  # epic warmup
    assert "epic warmup:" in capsys.readouterr().err
    with pytest.raises(ValueError, match="batch_docs must be >= 1"):
        WarmupOptions(corpus="x", batch_docs=0)


def _wait_until_workers_gone(session, timeout_s: float = 60) -> None:
    """Ray ends a dead driver's actors asynchronously, and an actor already recorded DEAD may
    still be finishing a task in its process: wait until every warm-up worker of another job than
    this session's (``session``: its runtime context) is DEAD and its process has exited."""
    from ray.util.state import list_actors

    deadline = time.monotonic() + timeout_s
    while True:
        # The session's own address: other Ray instances may run on this machine.
        actors = list_actors(address=session.gcs_address, filters=[("class_name", "=", "CompileWorker")],
                             detail=True, limit=1000)
        workers = [a for a in actors if a.job_id != session.get_job_id()]
        if workers and all(a.state == "DEAD" and not alive(a.pid) for a in workers):
            return
        assert time.monotonic() < deadline, f"the killed job's workers are still alive: {workers}"
        time.sleep(0.2)


def _stable_count(reg, quiet_s: float = 1.0, timeout_s: float = 30) -> int:
    """The number of registered documents once it has not changed for ``quiet_s``."""
    deadline = time.monotonic() + timeout_s
    count = len(reg.list_ids())
    while True:
        time.sleep(quiet_s)
        again = len(reg.list_ids())
        if again == count:
            return count
        assert time.monotonic() < deadline, "documents are still being registered"
        count = again
