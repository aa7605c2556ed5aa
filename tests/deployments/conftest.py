"""Serving-layer fixtures: one shared Serve application with two CPU engine replicas (the tiny
chat model) on the session's Ray, an HTTP client of it, and a reference engine in this process."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, settings

from tests.support.serving import APP_NAME, CHUNK_TOKENS, ROUTE_PREFIX, app_config_dict

# The API fuzzing (test_fuzz_api.py): a seeded, bounded run by default; thousands of bodies with
# --hypothesis-profile=fuzz-long.
_FUZZ = dict(deadline=None, derandomize=True, database=None,
             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
settings.register_profile("default", max_examples=300, **_FUZZ)
settings.register_profile("fuzz-long", max_examples=5000, **_FUZZ)
settings.load_profile("default")


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


@pytest.fixture(scope="module")
def http(base_url):
    """An HTTP client of the shared application."""
    with httpx.Client(base_url=base_url, timeout=60) as client:
        yield client


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
    from tests.support.make_serve import MakeServe

    served = MakeServe().start()
    yield served
    served.stop()
