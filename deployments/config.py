"""The serving configuration: one YAML file, one :class:`AppConfig`, validated at load.

    engine:   engine.EngineConfig fields (model, dtype, block_size, link_policy: {name, k}, ...)
    store:    kvstore.config.StoreConfig fields (persistent: dir://PATH | s3://BUCKET/PREFIX, ...)
    router:   router.config.RouterConfig fields (weights, penalties, fallback, ...)
    replica:  ReplicaConfig (how many engine replicas, their resources and request limits)
    ingress:  IngressConfig (served model name, body and document limits)
    http:     HttpConfig (where Serve's proxy listens)
    ray:      RayConfig (resources of a local Ray that ``epic serve`` starts itself)

Every error names the key path (``engine.dtyp``) and lists the valid keys or values. Relative
paths (the model directory, a ``dir://`` store) are resolved against a base directory at load
time, so replicas on other processes see absolute paths.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from configs.typed import from_mapping
from engine.config import EngineConfig
from engine.model_source import served_name_of
from kvstore.config import StoreConfig
from router.config import RouterConfig

REQUEST_ROUTERS = ("cache_aware", "power_of_two", "prefix_cache_affinity")
RequestRouterName = Literal["cache_aware", "power_of_two", "prefix_cache_affinity"]


@dataclass(frozen=True)
class ReplicaConfig:
    """The engine-replica deployment.

    Attributes:
        num_replicas: engine replicas (each owns one Engine and its tiered store).
        max_ongoing_requests: requests one replica runs at once (Serve's bound; the engine
            batches them). Serve's default of 5 throttles hard: set it to the engine's batch.
        max_queued_requests: requests waiting for a replica; beyond it the API answers 503.
        num_cpus: CPUs reserved per replica.
        num_gpus: GPUs reserved per replica.
        request_router: ``cache_aware`` (ours), ``power_of_two`` (Serve's default) or
            ``prefix_cache_affinity`` (Ray's text-prefix router; the baseline of benchmarks).
        routing_stats_period_s: how often replicas publish routing stats.
        health_check_period_s: how often Serve checks each replica.
    """

    num_replicas: int = 1
    max_ongoing_requests: int = 32
    max_queued_requests: int = 128
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    request_router: RequestRouterName = "cache_aware"
    routing_stats_period_s: float = 1.0
    health_check_period_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("num_replicas", "max_ongoing_requests", "max_queued_requests"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_cpus", "num_gpus"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("routing_stats_period_s", "health_check_period_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class IngressConfig:
    """The OpenAI-compatible ingress deployment.

    Attributes:
        served_model_name: the model id clients send (and ``GET /v1/models`` lists); "" (the
            default) derives it from the engine's model (:func:`engine.model_source.served_name_of`).
        max_body_bytes: largest request body; larger ones get 413.
        body_timeout_s: longest time a request body may take to arrive; slower ones get 408.
        max_header_bytes: largest total size of a request's headers; larger ones get 431.
        max_documents: most documents in one request.
        default_max_tokens: caps the ``max_tokens`` of chat completions that send none; unset,
            they may use the whole remaining context, as in vLLM (completions default to 16, as
            OpenAI's do).
        max_ongoing_requests: HTTP requests one ingress replica handles at once.
        num_replicas: ingress replicas.
        num_cpus: CPUs reserved per ingress replica (tokenization runs here).
        strict: unknown request fields are a 400 (otherwise ignored with a logged warning).
        api_key: when set, every ``/v1`` route needs ``Authorization: Bearer <api_key>``.
        api_keys: API key -> tenant. With any, every ``/v1`` route needs one of these keys (or
            ``api_key``, which is no tenant's); a tenant's chunk and prefix caches and its
            registered documents are its own (see README "Tenants and cache_salt").
        request_timeout_s: a generation request's deadline from its arrival; past it the client
            gets a 504 (or an SSE error event once streaming) and the engine aborts the request.
    """

    served_model_name: str = ""
    max_body_bytes: int = 4 * 1024 * 1024
    body_timeout_s: float = 30.0
    max_header_bytes: int = 64 * 1024
    max_documents: int = 64
    default_max_tokens: int | None = None
    max_ongoing_requests: int = 256
    num_replicas: int = 1
    num_cpus: float = 0.0
    strict: bool = False
    api_key: str | None = None
    api_keys: dict[str, str] = field(default_factory=dict)
    request_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if not self.request_timeout_s > 0:
            raise ValueError(f"request_timeout_s must be > 0, got {self.request_timeout_s}")
        for name in ("max_body_bytes", "max_header_bytes", "max_documents", "default_max_tokens",
                     "max_ongoing_requests", "num_replicas"):
            if getattr(self, name) is not None and getattr(self, name) < 1:  # default_max_tokens may be unset
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.api_key == "":
            raise ValueError("api_key must be non-empty when set")
        if any(not k or not tenant for k, tenant in self.api_keys.items()):
            raise ValueError("api_keys maps non-empty keys to non-empty tenant names")
        if self.api_key is not None and self.api_key in self.api_keys:
            raise ValueError("api_key is also one of api_keys: a key belongs to one tenant or none")
        if self.num_cpus < 0:
            raise ValueError(f"num_cpus must be >= 0, got {self.num_cpus}")
        if self.body_timeout_s <= 0:
            raise ValueError(f"body_timeout_s must be > 0, got {self.body_timeout_s}")


@dataclass(frozen=True)
class HttpConfig:
    """Where Serve's HTTP proxy listens (127.0.0.1 keeps the embedded default local)."""

    host: str = "127.0.0.1"
    port: int = 8000
    route_prefix: str = "/"

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("host must be non-empty")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        if not self.route_prefix.startswith("/"):
            raise ValueError(f"route_prefix must start with '/', got {self.route_prefix!r}")


@dataclass(frozen=True)
class RayConfig:
    """Resources of the local Ray instance ``epic serve`` starts when none is running (ignored
    when it joins a cluster through ``RAY_ADDRESS``)."""

    num_cpus: int = 2
    object_store_memory: int = 512 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.num_cpus < 1:
            raise ValueError(f"num_cpus must be >= 1, got {self.num_cpus}")
        if self.object_store_memory < 78 * 1024 * 1024:
            raise ValueError(f"object_store_memory must be >= 78 MiB (Ray's minimum), got {self.object_store_memory}")


@dataclass(frozen=True)
class AppConfig:
    """Everything the serving application is built from."""

    engine: EngineConfig
    store: StoreConfig = field(default_factory=StoreConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    replica: ReplicaConfig = field(default_factory=ReplicaConfig)
    ingress: IngressConfig = field(default_factory=IngressConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self) -> None:
        if not self.ingress.served_model_name:  # derived from the model when the config names none
            named = dataclasses.replace(self.ingress, served_model_name=served_name_of(self.engine.model))
            object.__setattr__(self, "ingress", named)

    @classmethod
    def from_dict(cls, data: Any, base_dir: Path | str | None = None) -> AppConfig:
        """Validate a parsed YAML mapping.

        Args:
            data: the mapping (``engine`` is required; other sections default).
            base_dir: directory that relative paths are resolved against (default: the
                current working directory).

        Raises:
            ValueError: naming the bad key path and what is valid there.
        """
        config = from_mapping(cls, data)
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        engine = dataclasses.replace(config.engine, model=_resolve_model(config.engine.model, base))
        store = dataclasses.replace(config.store, persistent=_resolve_persistent(config.store.persistent, base))
        return dataclasses.replace(config, engine=engine, store=store)


DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")  # shipped inside the package


def load_config(path: Path | str | None = None, base_dir: Path | str | None = None) -> AppConfig:
    """Read and validate a YAML config file (None: the embedded default, ``DEFAULT_CONFIG``).

    Raises:
        ValueError: the file is missing, is not YAML, or a key or value is bad (the message
            starts with the file name and names the key path).
    """
    path = DEFAULT_CONFIG if path is None else Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"cannot read config {path}: {e.strerror}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid YAML: {e}") from e
    try:
        return AppConfig.from_dict(data, base_dir)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def _resolve_model(model: str, base: Path) -> str:
    """A relative model path (directory or .gguf file) that exists under ``base`` becomes
    absolute; anything else (an absolute path, a packaged model's name, a hub id) is kept."""
    path = Path(model).expanduser()
    if not path.is_absolute() and (base / path).exists():
        return str((base / path).resolve())
    return str(path) if path.is_absolute() else model


def _resolve_persistent(uri: str, base: Path) -> str:
    location = StoreConfig(persistent=uri).location
    if location.kind != "dir" or Path(location.path).expanduser().is_absolute():
        return uri
    return "dir://" + str((base / location.path).resolve())
