"""The ``epic`` command.

    epic serve [MODEL] [--config FILE] [--host H] [--port N] [--max-model-len N]
               [--served-model-name NAME] [--dtype D] [--api-key KEY] [--link-policy P]
                                          serve the app until Ctrl-C / SIGTERM (vLLM's flags;
                                          flags override the config file)
    epic warmup ...                       fill the chunk store from a corpus

``epic serve`` joins the cluster named by ``RAY_ADDRESS`` when it is set; otherwise it starts
a local Ray with the config's ``ray:`` resources and stops it on exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
from pathlib import Path

APP_NAME = "epic"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["warmup"]:
        # The warm-up parses its own options (argparse's REMAINDER would not take a leading --flag).
        from warmup.job import main as warmup_main

        return warmup_main(argv[1:])
    parser = argparse.ArgumentParser(prog="epic", description="epic-serve: position-independent context caching.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve the OpenAI-compatible HTTP API")
    serve_cmd.add_argument("model", nargs="?", default=None,
                           help="model directory or hub id (overrides engine.model)")
    serve_cmd.add_argument("--config", type=Path, default=None,
                           help="serving YAML (default: the embedded deployments/default.yaml)")
    serve_cmd.add_argument("--host", default=None, help="override http.host")
    serve_cmd.add_argument("--port", type=int, default=None, help="override http.port")
    serve_cmd.add_argument("--max-model-len", type=int, default=None, help="override engine.max_model_len")
    serve_cmd.add_argument("--served-model-name", default=None, help="override ingress.served_model_name")
    serve_cmd.add_argument("--dtype", default=None, help="override engine.dtype (float32, bfloat16, float16)")
    serve_cmd.add_argument("--api-key", default=None,
                           help="require 'Authorization: Bearer KEY' on /v1 routes (ingress.api_key)")
    serve_cmd.add_argument("--enforce-eager", action="store_true", default=None,
                           help="never capture CUDA graphs (engine.enforce_eager)")
    serve_cmd.add_argument("--link-policy", default=None,
                           help="default link policy: NAME[:FIELD=VALUE,...], e.g. legolink:k=16 or naive:tail=0.15")
    commands.add_parser("warmup", help="compile a corpus into the chunk store (a Ray job; see epic warmup -h)")
    return _serve(parser.parse_args(argv))


def serve_config(args: argparse.Namespace):
    """The config file (or the embedded default) with the command line's flags over it.

    Raises:
        ValueError: a bad file, flag value or combination, naming it.
    """
    from deployments.config import load_config

    config = load_config(args.config)
    engine = {"model": _model_path(args.model), "max_model_len": args.max_model_len, "dtype": args.dtype,
              "enforce_eager": args.enforce_eager,
              "link_policy": None if args.link_policy is None else parse_link_policy(args.link_policy)}
    served = args.served_model_name
    if served is None and args.model is not None:  # as in vLLM: the served name is the model's
        from engine.model_source import served_name_of

        served = served_name_of(engine["model"])
    ingress = {"served_model_name": served, "api_key": args.api_key}
    http = {"host": args.host, "port": args.port}
    return dataclasses.replace(
        config,
        engine=dataclasses.replace(config.engine, **_given(engine)),
        ingress=dataclasses.replace(config.ingress, **_given(ingress)),
        http=dataclasses.replace(config.http, **_given(http)))


def parse_link_policy(text: str):
    """``--link-policy`` (a policy label: ``legolink:k=16``, ``naive:tail=0.15``) -> a LinkPolicy."""
    from engine.policy_label import parse_policy

    try:
        return parse_policy(text)
    except ValueError as e:
        raise ValueError(f"--link-policy {text!r}: {e}") from None


def _model_path(model: str | None) -> str | None:
    if model is None:
        return None
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


def _given(values: dict) -> dict:
    return {k: v for k, v in values.items() if v is not None}


def _serve(args: argparse.Namespace) -> int:
    try:
        config = serve_config(args)
        # Checked (and a GGUF file dequantized into the cache) here, once, before any replica
        # starts: a bad model is this process's clear error, not a replica failing in Ray's logs.
        from engine.model_source import resolve_model_dir

        resolve_model_dir(config.engine.model, config.engine.model_cache_dir)
    except ValueError as e:
        print(f"epic serve: {e}", file=sys.stderr)
        return 2
    http = config.http

    import ray
    from ray import serve

    from deployments.app import build
    from kvstore.ray_connect import LocalRay, connect_ray

    connect_ray(local=LocalRay(config.ray.num_cpus, config.ray.object_store_memory))
    # After ray.init, which installs its own SIGTERM handler (an abrupt exit).
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": http.host, "port": http.port})
        serve.run(build(config), name=APP_NAME, route_prefix=http.route_prefix)
        if not stop.is_set():
            model = config.ingress.served_model_name
            n = config.replica.num_replicas
            print(f"epic-serve listening on http://{http.host}:{http.port}{http.route_prefix.rstrip('/')} "
                  f"(model {model}, {n} replica{'s' if n != 1 else ''})", flush=True)
            stop.wait()
    finally:
        print("epic-serve stopping", flush=True)
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
