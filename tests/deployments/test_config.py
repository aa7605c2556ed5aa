"""Serving config: one YAML validated at load, every error naming its key path."""

from __future__ import annotations

import pytest
import yaml

from deployments.app import ROUTER_CLASSES, build, request_router_config
from deployments.cli import main
from deployments.config import AppConfig, load_config
from engine import EngineConfig


def test_embedded_default_loads_from_the_installed_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths resolve against the working directory
    config = load_config()
    assert config.engine.model == "smollm2-135m-instruct"
    assert config.store.persistent == f"dir://{tmp_path / '.store'}"
    assert config.replica.num_replicas == 1 and config.replica.request_router == "cache_aware"
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8000)
    assert config.ingress.served_model_name == "smollm2-135m-instruct"
    assert config.engine.link_policy.label() == "cacheblend-15"
    assert config.engine.link_policy == EngineConfig(model="x").link_policy  # the two defaults kept equal


def test_relative_paths_resolve_against_the_base_dir(tmp_path):
    (tmp_path / "m").mkdir()
    config = AppConfig.from_dict({"engine": {"model": "m"}, "store": {"persistent": "dir://kv"}}, base_dir=tmp_path)
    assert config.engine.model == str(tmp_path / "m")
    assert config.store.persistent == f"dir://{tmp_path / 'kv'}"
    hub = AppConfig.from_dict({"engine": {"model": "org/not-a-local-dir"}, "store": {"persistent": "s3://bucket/p"}},
                              base_dir=tmp_path)
    assert hub.engine.model == "org/not-a-local-dir" and hub.store.persistent == "s3://bucket/p"
    (tmp_path / "w.gguf").write_bytes(b"GGUF")
    assert AppConfig.from_dict({"engine": {"model": "w.gguf"}}, base_dir=tmp_path).engine.model == str(tmp_path / "w.gguf")


def test_served_model_name_derives_from_the_model_unless_set(tmp_path):
    (tmp_path / "my-model").mkdir()
    named = {"my-model": "my-model", "smollm2-135m-instruct": "smollm2-135m-instruct", "org/hub-model": "org/hub-model",
             "q/Qwen2-0.5B.Q8_0.gguf": "Qwen2-0.5B.Q8_0"}
    for model, served in named.items():
        config = AppConfig.from_dict({"engine": {"model": model}}, base_dir=tmp_path)
        assert config.ingress.served_model_name == served
    own = AppConfig.from_dict({"engine": {"model": "my-model"}, "ingress": {"served_model_name": "mine"}}, base_dir=tmp_path)
    assert own.ingress.served_model_name == "mine"


def test_types_are_checked_and_ints_widen_to_floats():
    config = AppConfig.from_dict({"engine": {"model": "x"}, "replica": {"num_cpus": 1, "num_gpus": 0}})
    assert config.replica.num_cpus == 1.0 and isinstance(config.replica.num_cpus, float)


@pytest.mark.parametrize("data,says", [
    ({"engin": {}}, "unknown key engin; valid keys: engine, store"),
    ({"store": {}}, "missing key engine"),
    ({"engine": {"dtype": "float32"}}, "missing key engine.model"),
    ({"engine": {"model": "x", "dtyp": "float32"}}, "unknown key engine.dtyp"),
    ({"engine": {"model": "x", "dtype": "fp8"}}, "EngineConfig.dtype 'fp8'"),
    ({"engine": {"model": "x", "block_size": "16"}}, "engine.block_size must be int"),
    ({"engine": {"model": "x", "enable_prefix_caching": 1}}, "engine.enable_prefix_caching must be bool"),
    ({"engine": {"model": "x", "link_policy": {"name": "magic"}}}, "engine.link_policy.name is 'magic'; valid values"),
    ({"engine": {"model": "x", "link_policy": {"name": "legolink", "kk": 3}}}, "unknown key engine.link_policy.kk"),
    ({"engine": {"model": "x"}, "store": {"memory_bytez": 1}}, "unknown key store.memory_bytez"),
    ({"engine": {"model": "x"}, "store": {"persistent": "ftp://host"}},
     "store: persistent 'ftp://host' has an unknown scheme"),
    ({"engine": {"model": "x"}, "store": {"memory_bytes": -1}}, "store: StoreConfig.memory_bytes must be >= 0"),
    ({"engine": {"model": "x"}, "router": {"fallbak": "x"}}, "unknown key router.fallbak"),
    ({"engine": {"model": "x"}, "router": {"fallback": "dice"}}, "router: RouterConfig.fallback 'dice'"),
    ({"engine": {"model": "x"}, "replica": {"request_router": "random"}},
     "replica.request_router is 'random'; valid values: cache_aware"),
    ({"engine": {"model": "x"}, "replica": {"num_replicas": 0}}, "replica: num_replicas must be >= 1"),
    ({"engine": {"model": "x"}, "replica": "two"}, "replica must be a mapping"),
    ({"engine": {"model": "x"}, "http": {"port": 70000}}, "http: port must be in [0, 65535]"),
    ({"engine": {"model": "x"}, "ray": {"object_store_memory": 1024}}, "ray: object_store_memory must be >= 78 MiB"),
    ([1, 2], "the config must be a mapping"),
])
def test_bad_configs_name_the_key(data, says):
    with pytest.raises(ValueError) as e:
        AppConfig.from_dict(data)
    assert says in str(e.value)


def test_file_errors(tmp_path):
    with pytest.raises(ValueError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("engine: [unclosed\n")
    with pytest.raises(ValueError, match="is not valid YAML"):
        load_config(bad)
    bad.write_text(yaml.safe_dump({"engine": {"model": "x", "dtyp": "float32"}}))
    with pytest.raises(ValueError, match=r"bad.yaml: unknown key engine.dtyp"):
        load_config(bad)


def test_cli_reports_a_bad_config_without_starting_anything(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"engine": {"model": "x"}, "replica": {"num_replicaz": 2}}))
    assert main(["serve", "--config", str(bad)]) == 2
    assert "unknown key replica.num_replicaz" in capsys.readouterr().err


def test_router_choice_and_app_graph():
    config = AppConfig.from_dict({"engine": {"model": "x"}, "router": {"queue_penalty_tokens": 64},
                                  "replica": {"num_replicas": 2, "max_ongoing_requests": 48}})
    rrc = request_router_config(config)
    assert rrc.request_router_class == ROUTER_CLASSES["cache_aware"]
    assert rrc.request_router_kwargs["queue_penalty_tokens"] == 64.0
    for name in ("power_of_two", "prefix_cache_affinity"):
        other = AppConfig.from_dict({"engine": {"model": "x"}, "replica": {"request_router": name}})
        assert request_router_config(other).request_router_kwargs == {}
    app = build(config)
    replica = app._bound_deployment.init_args[0]._bound_deployment
    assert replica.name == "EngineReplica"
    assert replica._deployment_config.num_replicas == 2
    assert replica._deployment_config.max_ongoing_requests == 48


def test_every_router_class_imports():
    import importlib

    for path in ROUTER_CLASSES.values():
        module, _, name = path.partition(":")
        assert isinstance(getattr(importlib.import_module(module), name), type)



def test_build_app_from_a_serve_config_entry(tmp_path):
    """What ``serve run`` / ``serve deploy`` do with ``import_path`` and ``args``."""
    from ray._common.utils import import_attr
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve import Application

    builder = import_attr("deployments.app:build_app")
    config = tmp_path / "app.yaml"
    config.write_text(yaml.safe_dump({"engine": {"model": "some/model"}, "replica": {"num_replicas": 3}}))
    app = call_user_app_builder_with_args_if_necessary(builder, {"config": str(config)})
    assert isinstance(app, Application)
    assert app._bound_deployment.init_args[0]._bound_deployment._deployment_config.num_replicas == 3
    assert isinstance(call_user_app_builder_with_args_if_necessary(builder, {}), Application)  # embedded default
    with pytest.raises(ValueError, match="unknown build_app argument 'conf'"):
        call_user_app_builder_with_args_if_necessary(builder, {"conf": "x"})
