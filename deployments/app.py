"""The Serve application: an ingress bound to the engine-replica deployment.

From a Serve config file (``serve run`` / ``serve deploy`` / a RayService)::

    applications:
      - name: epic
        route_prefix: /
        import_path: deployments.app:build_app
        args: {config: deployments/default.yaml}

or from Python: ``serve.run(build(load_config(path)))``.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application
from ray.serve.config import RequestRouterConfig

from deployments.config import AppConfig, load_config
from deployments.http.ingress import Ingress
from deployments.replica import EngineReplica

REPLICA_DEPLOYMENT = "EngineReplica"
INGRESS_DEPLOYMENT = "Ingress"

# request_router name -> the RequestRouter class Serve loads in every caller of the replicas.
ROUTER_CLASSES = {
    "cache_aware": "router.serve_adapter:CacheAwareRequestRouter",
    "power_of_two": "ray.serve._private.request_router:PowerOfTwoChoicesRequestRouter",
    "prefix_cache_affinity": (
        "ray.llm._internal.serve.routing_policies.prefix_aware.prefix_aware_router:PrefixCacheAffinityRouter"
    ),
}


def request_router_config(config: AppConfig) -> RequestRouterConfig:
    """The replica deployment's router: ours takes the ``router:`` section as its kwargs."""
    name = config.replica.request_router
    return RequestRouterConfig(
        request_router_class=ROUTER_CLASSES[name],
        request_router_kwargs=config.router.to_dict() if name == "cache_aware" else {},
        request_routing_stats_period_s=config.replica.routing_stats_period_s,
    )


def build(config: AppConfig) -> Application:
    """The application: ``Ingress`` -> ``EngineReplica`` (with the configured router)."""
    r = config.replica
    replica = serve.deployment(EngineReplica).options(
        name=REPLICA_DEPLOYMENT,
        num_replicas=r.num_replicas,
        max_ongoing_requests=r.max_ongoing_requests,
        max_queued_requests=r.max_queued_requests,
        ray_actor_options={"num_cpus": r.num_cpus, "num_gpus": r.num_gpus},
        request_router_config=request_router_config(config),
        health_check_period_s=r.health_check_period_s,
    ).bind(config.engine, config.store)
    i = config.ingress
    ingress = serve.deployment(Ingress).options(
        name=INGRESS_DEPLOYMENT,
        num_replicas=i.num_replicas,
        max_ongoing_requests=i.max_ongoing_requests,
        ray_actor_options={"num_cpus": i.num_cpus},
    )
    return ingress.bind(replica, config.engine, config.store, config.ingress)


def build_app(args: dict[str, Any]) -> Application:
    """Application builder for Serve config files: ``args: {config: PATH}`` (default: the
    embedded ``deployments/default.yaml``; relative paths inside a config resolve against the
    working directory).

    Raises:
        ValueError: an unknown argument or a bad config.
    """
    unknown = sorted(set(args) - {"config"})
    if unknown:
        raise ValueError(f"unknown build_app argument {unknown[0]!r}; valid: config")
    return build(load_config(args.get("config")))
