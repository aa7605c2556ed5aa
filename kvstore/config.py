"""The chunk store's one configuration object (embedded in the serving YAML under ``store:``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from configs.typed import check_types, from_mapping

MiB = 1024 * 1024
PERSISTENT_FORMS = "'dir://PATH', a plain PATH, 's3://BUCKET/PREFIX', or '' for none"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class PersistentLocation(NamedTuple):
    """Where the persistent tier lives, parsed from :attr:`StoreConfig.persistent`."""

    kind: Literal["none", "dir", "s3"]
    path: str = ""  # kind "dir": the directory (absolute or relative to the working directory)
    bucket: str = ""  # kind "s3"
    prefix: str = ""  # kind "s3": key prefix without leading/trailing "/" ("" for the bucket root)


def parse_persistent(uri: str) -> PersistentLocation:
    """Parse ``dir:///abs/path``, ``dir://rel/path``, a plain path, ``s3://bucket/prefix`` or ``""``.

    Raises:
        ValueError: for an unknown scheme, an empty path or an invalid bucket name.
    """
    if uri == "":
        return PersistentLocation("none")
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not _BUCKET.match(bucket):
            raise ValueError(f"persistent {uri!r}: {bucket!r} is not a valid S3 bucket name")
        return PersistentLocation("s3", bucket=bucket, prefix=prefix.strip("/"))
    if uri.startswith("dir://"):
        path = uri[len("dir://") :]
    elif "://" in uri:
        raise ValueError(f"persistent {uri!r} has an unknown scheme; valid forms: {PERSISTENT_FORMS}")
    else:
        path = uri
    if not path:
        raise ValueError(f"persistent {uri!r} names no directory; valid forms: {PERSISTENT_FORMS}")
    return PersistentLocation("dir", path=path)


@dataclass(frozen=True)
class StoreConfig:
    """Sizes, locations and timeouts of the tiered chunk store.

    Attributes:
        memory_bytes: budget of the in-process memory tier; 0 disables it.
        object_store_bytes: budget of the Ray object-store tier (cluster-wide, split evenly over
            the directory shards); 0 disables it, as does Ray not running.
        persistent: the persistent tier, see :func:`parse_persistent`.
        s3_endpoint_url: S3-compatible endpoint (MinIO, moto, ...); "" for AWS.
        s3_region: region name; "" lets boto3 pick it from the environment.
        s3_connect_timeout_s: TCP connect timeout of one S3 attempt.
        s3_read_timeout_s: socket read timeout of one S3 attempt.
        s3_max_attempts: attempts per S3 call, retries included (botocore "standard" backoff).
        s3_multipart_threshold_bytes: objects at least this large are uploaded in parts.
        s3_multipart_chunk_bytes: part size of multipart uploads (S3 needs >= 5 MiB).
        s3_max_concurrency: parallel part uploads of one object.
        object_store_timeout_s: longest wait on the directory actor or a Ray object.
        object_store_verify_checksum: also checksum payloads read from the Ray object store.
            Off by default: objects there are immutable and sealed in shared memory, and the
            check would cost more than the zero-copy read itself.
        object_store_ref_cache_bytes: bytes of object-store chunks whose refs this process keeps
            between directory round trips, so a repeated get skips the directory actor. An
            object the directory evicts stays in shared memory until this process next talks
            to the directory, so the object store may briefly hold up to this much more than
            its budget per process. 0 disables the cache.
        write_queue_size: chunks waiting for the background persistent writer; a put that
            finds it full skips the persistent copy (counted as a dropped write).
        directory_actor_name: name of the detached object-store directory actor (with several
            shards, ``NAME-0`` ... ``NAME-{n-1}``).
        directory_actor_namespace: Ray namespace of that actor.
        directory_shards: directory actors the keys are sharded over (by key hash). Every get
            that misses a process's ref cache asks one; several spread those calls and the
            objects they own over the cluster's nodes.
        persistent_max_bytes: a ``dir://`` store's budget for chunk KV files; beyond it the
            least recently used chunks are deleted (document records and chunk token ids never
            are). 0: unbounded. S3 buckets bound themselves (lifecycle rules).
        breaker_failures: failed calls in a row that open a tier's circuit breaker (the object
            store and the persistent tier): its calls are then skipped, not retried each time.
        breaker_cooldown_s: how long an open breaker skips calls before one probe call.
        breaker_max_cooldown_s: the cooldown doubles after each failed probe, up to this.
    """

    memory_bytes: int = 512 * MiB
    object_store_bytes: int = 1024 * MiB
    persistent: str = "dir://.epic-store"
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_connect_timeout_s: float = 2.0
    s3_read_timeout_s: float = 30.0
    s3_max_attempts: int = 3
    s3_multipart_threshold_bytes: int = 32 * MiB
    s3_multipart_chunk_bytes: int = 8 * MiB
    s3_max_concurrency: int = 4
    object_store_timeout_s: float = 30.0
    object_store_verify_checksum: bool = False
    object_store_ref_cache_bytes: int = 256 * MiB
    write_queue_size: int = 64
    directory_actor_name: str = "epic-kv-directory"
    directory_actor_namespace: str = "epic-serve"
    directory_shards: int = 1
    persistent_max_bytes: int = 0
    breaker_failures: int = 3
    breaker_cooldown_s: float = 1.0
    breaker_max_cooldown_s: float = 30.0

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("memory_bytes", "object_store_bytes", "object_store_ref_cache_bytes", "persistent_max_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"StoreConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("s3_max_attempts", "s3_max_concurrency", "write_queue_size", "directory_shards",
                     "breaker_failures"):
            if getattr(self, name) < 1:
                raise ValueError(f"StoreConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("s3_connect_timeout_s", "s3_read_timeout_s", "object_store_timeout_s", "breaker_cooldown_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"StoreConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.s3_multipart_chunk_bytes < 5 * MiB:
            raise ValueError(
                f"StoreConfig.s3_multipart_chunk_bytes must be >= 5 MiB (S3's smallest part), got {self.s3_multipart_chunk_bytes}"
            )
        if self.s3_multipart_threshold_bytes < self.s3_multipart_chunk_bytes:
            raise ValueError("StoreConfig.s3_multipart_threshold_bytes must be >= s3_multipart_chunk_bytes")
        if not self.directory_actor_name or not self.directory_actor_namespace:
            raise ValueError("StoreConfig.directory_actor_name and directory_actor_namespace must be non-empty")
        if self.breaker_max_cooldown_s < self.breaker_cooldown_s:
            raise ValueError("StoreConfig.breaker_max_cooldown_s must be >= breaker_cooldown_s")
        if self.persistent_max_bytes and parse_persistent(self.persistent).kind != "dir":
            raise ValueError("StoreConfig.persistent_max_bytes bounds a dir:// store only")
        parse_persistent(self.persistent)

    @property
    def location(self) -> PersistentLocation:
        return parse_persistent(self.persistent)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> StoreConfig:
        """Build from a mapping (the ``store:`` section of the serving YAML).

        Raises:
            ValueError: naming any unknown key (and listing the valid ones) or a bad value.
        """
        return from_mapping(cls, d, "store")
