"""`epic serve MODEL` with vLLM's flags: flags over the config file, an API key on /v1 routes
(401 in OpenAI's shape without it), strict mode from the config; and the flag parsing alone."""

from __future__ import annotations

import argparse
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from deployments.cli import parse_link_policy, serve_config
from engine.segments import LinkPolicy

from tests.support.serving import app_config_dict, free_port

STARTUP_TIMEOUT_S = 240


def args(**kw) -> argparse.Namespace:
    base = dict(model=None, config=None, host=None, port=None, max_model_len=None, served_model_name=None,
                dtype=None, api_key=None, link_policy=None, enforce_eager=None)
    return argparse.Namespace(**{**base, **kw})


def write_config(tmp_path: Path, tiny_model_dir: Path, **ingress) -> Path:
    data = app_config_dict(Path("unused-model"), tmp_path / "store", num_replicas=1)
    data["engine"]["model"] = "unused-model"  # the MODEL argument replaces it
    data["ingress"].update(ingress)
    data["ray"] = {"num_cpus": 2, "object_store_memory": 128 * 1024 * 1024}
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_model_argument_names_the_served_model(tmp_path, tiny_model_dir):
    config = serve_config(args(model=str(tiny_model_dir), config=write_config(tmp_path, tiny_model_dir)))
    assert config.ingress.served_model_name == tiny_model_dir.resolve().name
    default = serve_config(args())
    assert (default.engine.model, default.ingress.served_model_name) == ("smollm2-135m-instruct",) * 2


def test_flags_override_the_config(tmp_path, tiny_model_dir):
    path = write_config(tmp_path, tiny_model_dir)
    config = serve_config(args(model=str(tiny_model_dir), config=path, port=1234, host="127.0.0.2",
                               max_model_len=512, served_model_name="tiny-cli", dtype="bfloat16", api_key="k",
                               link_policy="cacheblend:ratio=0.3", enforce_eager=True))
    assert config.engine.model == str(tiny_model_dir.resolve())
    assert config.engine.enforce_eager
    assert (config.engine.max_model_len, config.engine.dtype) == (512, "bfloat16")
    assert config.engine.link_policy == LinkPolicy("cacheblend", ratio=0.3)
    assert (config.ingress.served_model_name, config.ingress.api_key) == ("tiny-cli", "k")
    assert (config.http.host, config.http.port) == ("127.0.0.2", 1234)
    kept = serve_config(args(config=path))
    assert kept.engine.model == "unused-model" and kept.ingress.api_key is None and not kept.engine.enforce_eager
    with pytest.raises(ValueError, match="dtype"):
        serve_config(args(config=path, dtype="int3"))


@pytest.mark.parametrize("text,policy", [("legolink", LinkPolicy("legolink")), ("legolink:k=4", LinkPolicy("legolink", 4)),
                                         ("full", LinkPolicy("full")),
                                         ("naive:tail=0.15", LinkPolicy("naive", tail=0.15))])
def test_parse_link_policy(text, policy):
    assert parse_link_policy(text) == policy


def test_parse_link_policy_refuses():
    for bad in ("magic", "legolink:x", "legolink:k=x", "naive:tail=2"):
        with pytest.raises(ValueError, match="--link-policy"):
            parse_link_policy(bad)


def test_epic_serve_model_with_api_key(tmp_path, tiny_model_dir):
    port = free_port()
    config = write_config(tmp_path, tiny_model_dir, strict=True)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    epic = Path(sys.executable).parent / "epic"
    proc = subprocess.Popen([str(epic), "serve", str(tiny_model_dir), "--config", str(config), "--port", str(port),
                             "--api-key", "sk-test", "--served-model-name", "tiny-cli", "--max-model-len", "512"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not any(f"listening on http://127.0.0.1:{port}" in line for line in seen):
            assert proc.poll() is None, "".join(seen)
            assert time.monotonic() < deadline, "no startup line:\n" + "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        url = f"http://127.0.0.1:{port}"
        body = {"model": "tiny-cli", "prompt": "Stone", "max_tokens": 2}
        r = httpx.post(url + "/v1/completions", json=body, timeout=60)
        assert r.status_code == 401
        assert r.json() == {"error": {"message": r.json()["error"]["message"], "type": "invalid_request_error",
                                      "param": None, "code": "invalid_api_key"}}
        wrong = httpx.post(url + "/v1/completions", json=body, headers={"Authorization": "Bearer nope"}, timeout=60)
        assert wrong.status_code == 401
        auth = {"Authorization": "Bearer sk-test"}
        ok = httpx.post(url + "/v1/completions", json=body, headers=auth, timeout=60)
        assert ok.status_code == 200, ok.text
        assert ok.json()["usage"]["completion_tokens"] == 2
        models = httpx.get(url + "/v1/models", headers=auth, timeout=60).json()
        assert [(m["id"], m["max_model_len"]) for m in models["data"]] == [("tiny-cli", 512)]
        assert httpx.get(url + "/v1/models", timeout=60).status_code == 401
        assert httpx.get(url + "/health", timeout=60).status_code == 200  # outside /v1: no key
        strict = httpx.post(url + "/v1/completions", json={**body, "frobnicate": 1}, headers=auth, timeout=60)
        assert strict.status_code == 400 and strict.json()["error"]["param"] == "frobnicate"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=90)
        while not lines.empty():
            seen.append(lines.get())
    assert code == 0, "".join(seen)


def test_a_bad_model_file_is_a_clear_error_before_ray_starts(tmp_path, capsys):
    from deployments.cli import main

    bad = tmp_path / "weights.gguf"
    bad.write_bytes(b"not a gguf file")
    assert main(["serve", str(bad), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert f"epic serve: {bad} is not a GGUF file" in err
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(b"GGUF" + b"\x03\x00\x00\x00")
    assert main(["serve", str(truncated)]) == 2
    assert "truncated or malformed GGUF" in capsys.readouterr().err
