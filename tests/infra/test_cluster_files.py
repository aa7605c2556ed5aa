"""The cluster files in infra/ checked against the schemas Ray ships and against each other: the
launcher YAML, the Serve config (whose import path must build the app), the RayService
manifest, the Dockerfile and the serving config they all name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import ray
import yaml

from deployments.app import ROUTER_CLASSES, build_app
from deployments.config import load_config
from router.config import RouterConfig

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
PROJECT_ON_NODES = "/home/ray/epic-serve"  # where the launcher and the image put the project
RAY_IMAGE = f"rayproject/ray:{ray.__version__}-py311-gpu"


def load(name: str):
    return yaml.safe_load((INFRA / name).read_text())


@pytest.fixture(scope="module")
def cluster() -> dict:
    return load("ray-cluster-aws.yaml")


@pytest.fixture(scope="module")
def serve_config() -> dict:
    return load("serve-aws.yaml")


@pytest.fixture(scope="module")
def app(serve_config) -> dict:
    (app,) = serve_config["applications"]
    return app


@pytest.fixture(scope="module")
def app_config(app):
    path = app["args"]["config"]
    assert path.startswith(PROJECT_ON_NODES + "/"), path
    return load_config(ROOT / path.removeprefix(PROJECT_ON_NODES + "/"))


@pytest.fixture(scope="module")
def overrides(app) -> dict[str, dict]:
    return {d["name"]: d for d in app["deployments"]}


@pytest.fixture(scope="module")
def rayservice() -> dict:
    docs = list(yaml.safe_load_all((INFRA / "rayservice.yaml").read_text()))
    (service,) = [d for d in docs if d["kind"] == "RayService"]
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    return {"service": service, "account": account}


def test_cluster_yaml_validates_against_rays_schema(cluster):
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(cluster, schema)
    validate_config(prepare_config(cluster))  # Ray's own check, after it fills its defaults
    with pytest.raises(jsonschema.ValidationError):  # the schema does bite
        jsonschema.validate({**cluster, "available_node_types": {"x": {"node_config": {}}}}, schema)


def test_cluster_has_a_cpu_head_and_autoscaled_gpu_workers_with_instance_profiles(cluster, overrides):
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert re.match(r"[mcr]\d", head["node_config"]["InstanceType"]), "the head is a CPU instance"
    (gpu_name,) = [n for n in types if n != cluster["head_node_type"]]
    gpu = types[gpu_name]
    assert gpu["node_config"]["InstanceType"].startswith(("g", "p"))
    bounds = overrides["EngineReplica"]["autoscaling_config"]
    assert 1 <= gpu["min_workers"] == bounds["min_replicas"] < gpu["max_workers"] == bounds["max_replicas"]
    assert cluster["max_workers"] >= gpu["max_workers"]
    for node in types.values():
        assert set(node["node_config"]["IamInstanceProfile"]) == {"Name"}
    assert cluster["docker"]["image"] == RAY_IMAGE
    assert cluster["file_mounts"] == {"~/epic-serve": "."}
    assert any("$HOME/epic-serve" in c and "pip install" in c for c in cluster["setup_commands"])


def test_no_credentials_in_infra_files():
    secret = re.compile(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|aws_access_key_id|AWS_SECRET", re.IGNORECASE)
    for path in INFRA.rglob("*"):
        if path.is_file() and path.suffix in {".yaml", ".json", ".md", ""}:
            assert not secret.search(path.read_text()), path


def test_serve_config_validates_and_its_import_path_builds_the_app(serve_config, app, app_config, overrides):
    from ray.serve._private.build_app import build_app as serve_build_app
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(serve_config)
    assert app["import_path"] == "deployments.app:build_app"
    assert app_config.store.location.kind == "s3"
    assert app_config.engine.device == "cuda" and app_config.replica.num_gpus == 1
    application = build_app({"config": str(ROOT / app["args"]["config"].removeprefix(PROJECT_ON_NODES + "/"))})
    built = {d.name: d for d in serve_build_app(application, name=app["name"], default_runtime_env={}).deployments}
    assert set(overrides) == set(built) == {"EngineReplica", "Ingress"}
    # The Serve config's overrides say what the code already does.
    for name, options in overrides.items():
        assert built[name].ray_actor_options == {k: float(v) for k, v in options["ray_actor_options"].items()}
        assert built[name].max_ongoing_requests == options["max_ongoing_requests"]
    assert built["EngineReplica"].max_queued_requests == overrides["EngineReplica"]["max_queued_requests"]
    assert built["Ingress"].num_replicas == overrides["Ingress"]["num_replicas"]
    router = overrides["EngineReplica"]["request_router_config"]
    code_router = built["EngineReplica"]._deployment_config.request_router_config
    assert router["request_router_class"] == code_router.request_router_class \
        == ROUTER_CLASSES[app_config.replica.request_router]
    assert RouterConfig.from_dict(router["request_router_kwargs"]) == app_config.router
    assert router["request_routing_stats_period_s"] == app_config.replica.routing_stats_period_s


def test_rayservice_names_the_same_app_and_settings(rayservice, serve_config, overrides):
    service, account = rayservice["service"], rayservice["account"]
    assert service["apiVersion"] == "ray.io/v1"
    serve_v2 = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert serve_v2 == {"applications": serve_config["applications"]}
    spec = service["spec"]["rayClusterConfig"]
    assert spec["rayVersion"] == ray.__version__
    (group,) = spec["workerGroupSpecs"]
    bounds = overrides["EngineReplica"]["autoscaling_config"]
    assert (group["minReplicas"], group["maxReplicas"]) == (bounds["min_replicas"], bounds["max_replicas"])
    (worker,) = group["template"]["spec"]["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == overrides["EngineReplica"]["ray_actor_options"]["num_gpus"]
    (head,) = spec["headGroupSpec"]["template"]["spec"]["containers"]
    assert head["image"] == worker["image"]
    assert {8000, 8265, 6379} <= {p["containerPort"] for p in head["ports"]}
    for pod in (spec["headGroupSpec"]["template"]["spec"], group["template"]["spec"]):
        assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_dockerfile_builds_on_rays_image_and_puts_the_project_where_the_serve_config_looks():
    lines = [line.split(None, 1) for line in (INFRA / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    instructions = [(op.upper(), arg.strip()) for op, arg in lines]
    assert instructions[0] == ("FROM", RAY_IMAGE)
    assert ("WORKDIR", PROJECT_ON_NODES) in instructions
    copied = {arg.split()[-1] for op, arg in instructions if op == "COPY"}
    assert {"engine", "kvstore", "router", "deployments", "infra"} <= copied
    assert any(op == "RUN" and 'pip install' in arg and '-e ".[gpu]"' in arg for op, arg in instructions)
