"""Serving-layer fixtures: a tiny model with a chat template, one shared Serve application
with two CPU engine replicas on the session's Ray, and a reference engine in this process."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from serving_helpers import APP_NAME, CHUNK_TOKENS, ROUTE_PREFIX, app_config_dict, free_port
from tiny_model import build_tiny_model

# The API fuzzing (test_fuzz_api.py): a seeded, bounded run by default; thousands of bodies with
# --hypothesis-profile=fuzz-long.
_FUZZ = dict(deadline=None, derandomize=True, database=None,
             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
settings.register_profile("default", max_examples=300, **_FUZZ)
settings.register_profile("fuzz-long", max_examples=5000, **_FUZZ)
settings.load_profile("default")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-chat-llama"))


@pytest.fixture(scope="session")
def serve_url(ray_session) -> str:
    """Serve's HTTP proxy on 127.0.0.1 (a free port, unless Serve already runs in this Ray)."""
    from ray import serve
    from ray.serve.context import _get_global_client

    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    http = _get_global_client().http_config
    assert http.host == "127.0.0.1", f"Serve's proxy listens on {http.host}, not 127.0.0.1"
    return f"http://127.0.0.1:{http.port}"


@pytest.fixture(scope="session")
def app_config(tiny_model_dir, tmp_path_factory):
    from deployments.config import AppConfig

    return AppConfig.from_dict(app_config_dict(tiny_model_dir, tmp_path_factory.mktemp("store")))


@pytest.fixture(scope="session")
def base_url(serve_url, app_config) -> str:
    """The shared application's URL (OpenAI clients take ``base_url + "/v1"``)."""
    from ray import serve

    from deployments.app import build

    serve.run(build(app_config), name=APP_NAME, route_prefix=ROUTE_PREFIX)
    yield serve_url + ROUTE_PREFIX
    serve.delete(APP_NAME)


@pytest.fixture(scope="session")
def reference_engine(tiny_model_dir, app_config):
    """The same model and engine settings, driven directly in this process."""
    from engine import Engine

    return Engine(app_config.engine)


@pytest.fixture(scope="session")
def builder(tiny_model_dir, reference_engine):
    from deployments.prompting import PromptBuilder

    return PromptBuilder(reference_engine.tokenizer, reference_engine.model_fingerprint, CHUNK_TOKENS)



@pytest.fixture(scope="session")
def make_serve():
    """`make serve` (the embedded default) on a free port, shared by the session's tests; stopped
    at the end, asserting a clean exit and no process left behind."""
    from make_serve import MakeServe

    served = MakeServe().start()
    yield served
    served.stop()
