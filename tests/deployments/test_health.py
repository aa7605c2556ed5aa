"""/health reflects the engine: an engine replica whose step loop died answers 503, fails Serve's
check_health, and Serve replaces it (then /health is 200 again)."""

from __future__ import annotations

import sys
import time

import httpx
import pytest
import ray

from deployments.replica import EngineReplica

from tests.support.serving import app_config_dict

APP = "epic-health"
PREFIX = "/epic-health"


class KillableReplica(EngineReplica):
    """The real engine replica, plus a way for the test to kill its step loop."""

    def kill_step_loop(self) -> None:
        def broken_load():
            raise RuntimeError("load failed")  # outside the step's error handling: the loop dies

        self.engine.engine.load = broken_load
        self.engine.abort("wake-up")
        assert self.engine.wait_stopped(10)


def poll(url: str, status: int, timeout_s: float) -> list[int]:
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen.append(httpx.get(url, timeout=30).status_code)
        if seen[-1] == status:
            return seen
        time.sleep(0.5)
    pytest.fail(f"/health never answered {status}: {seen}")


def test_dead_step_loop_is_unhealthy_and_replaced(serve_url, tiny_model_dir, tmp_path):
    from ray import serve

    from deployments.app import request_router_config
    from deployments.config import AppConfig
    from deployments.http.ingress import Ingress

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    config = AppConfig.from_dict(app_config_dict(tiny_model_dir, tmp_path / "store", num_replicas=1))
    replica = serve.deployment(KillableReplica).options(
        name="EngineReplica", num_replicas=1, ray_actor_options={"num_cpus": 0},
        request_router_config=request_router_config(config), health_check_period_s=1.0,
    ).bind(config.engine, config.store)
    app = serve.deployment(Ingress).options(name="Ingress", ray_actor_options={"num_cpus": 0}).bind(
        replica, config.engine, config.store, config.ingress)
    serve.run(app, name=APP, route_prefix=PREFIX)
    try:
        url = serve_url + PREFIX + "/health"
        assert httpx.get(url, timeout=30).status_code == 200
        engine_handle = serve.get_deployment_handle("EngineReplica", app_name=APP)
        engine_handle.kill_step_loop.remote().result(timeout_s=30)
        poll(url, 503, timeout_s=30)
        poll(url, 200, timeout_s=120)  # Serve replaced the replica
    finally:
        serve.delete(APP)
