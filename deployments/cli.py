"""The ``epic`` command.

    epic serve [--config FILE] [--host H] [--port N]   serve the app until Ctrl-C / SIGTERM
    epic warmup ...                                    fill the chunk store from a corpus

``epic serve`` joins the cluster named by ``RAY_ADDRESS`` when it is set; otherwise it starts
a local Ray with the config's ``ray:`` resources and stops it on exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
from pathlib import Path

APP_NAME = "epic"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["warmup"]:
        # The warm-up parses its own options (argparse's REMAINDER would not take a leading --flag).
        from deployments.warmup import main as warmup_main

        return warmup_main(argv[1:])
    parser = argparse.ArgumentParser(prog="epic", description="epic-serve: position-independent context caching.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve the OpenAI-compatible HTTP API")
    serve_cmd.add_argument("--config", type=Path, default=None,
                           help="serving YAML (default: the embedded infra/local.yaml)")
    serve_cmd.add_argument("--host", default=None, help="override http.host")
    serve_cmd.add_argument("--port", type=int, default=None, help="override http.port")
    commands.add_parser("warmup", help="compile a corpus into the chunk store (a Ray job; see epic warmup -h)")
    return _serve(parser.parse_args(argv))


def _serve(args: argparse.Namespace) -> int:
    from deployments.app import DEFAULT_CONFIG, ROOT
    from deployments.config import load_config

    try:
        if args.config is None:
            config = load_config(DEFAULT_CONFIG, base_dir=ROOT)
        else:
            config = load_config(args.config)
        http = dataclasses.replace(config.http, **{k: v for k, v in (("host", args.host), ("port", args.port))
                                                   if v is not None})
    except ValueError as e:
        print(f"epic serve: {e}", file=sys.stderr)
        return 2
    config = dataclasses.replace(config, http=http)

    import ray
    from ray import serve

    from deployments.app import build

    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=config.ray.num_cpus, object_store_memory=config.ray.object_store_memory,
                 include_dashboard=False, log_to_driver=False)
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
