"""Byte objects in an S3 bucket (AWS or any S3-compatible endpoint) through boto3.

Retries with backoff are botocore's "standard" mode (``s3_max_attempts`` attempts, jittered
exponential backoff); every attempt has connect and read timeouts. Objects at least
``s3_multipart_threshold_bytes`` large go up as a multipart upload through boto3's transfer
manager. Reads land in one preallocated buffer (no join of chunks).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import boto3
import boto3.exceptions
import botocore.config
import botocore.exceptions
import numpy as np
from boto3.s3.transfer import TransferConfig

from kvstore.blobs import Buffer, check_name
from kvstore.config import StoreConfig
from kvstore.errors import TierError

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_FAILURES = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, boto3.exceptions.Boto3Error, OSError)
_DELETE_BATCH = 1000  # S3's DeleteObjects limit


def make_s3_client(config: StoreConfig):
    """A thread-safe boto3 S3 client with the config's endpoint, region, timeouts and retries."""
    client_config = botocore.config.Config(
        connect_timeout=config.s3_connect_timeout_s,
        read_timeout=config.s3_read_timeout_s,
        retries={"max_attempts": config.s3_max_attempts, "mode": "standard"},
        max_pool_connections=max(10, 2 * config.s3_max_concurrency),
        # The codec's own xxh3 covers every stored byte end to end; skip botocore's extra CRC.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # Custom endpoints (MinIO, moto, ...) rarely have wildcard DNS for bucket subdomains.
        s3={"addressing_style": "path"} if config.s3_endpoint_url else None,
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=config.s3_endpoint_url or None,
        region_name=config.s3_region or None,
        config=client_config,
    )


def _is_not_found(err: Exception) -> bool:
    return isinstance(err, botocore.exceptions.ClientError) and err.response.get("Error", {}).get("Code") in _NOT_FOUND


class S3Blobs:
    """A BlobStore over ``s3://bucket/prefix/``."""

    def __init__(self, client, bucket: str, prefix: str, config: StoreConfig) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._multipart_threshold = config.s3_multipart_threshold_bytes
        self._transfer = TransferConfig(
            multipart_threshold=config.s3_multipart_threshold_bytes,
            multipart_chunksize=config.s3_multipart_chunk_bytes,
            max_concurrency=config.s3_max_concurrency,
        )

    def _key(self, name: str) -> str:
        check_name(name)
        return f"{self.prefix}/{name}" if self.prefix else name

    def _name(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key

    def put(self, name: str, parts: Sequence[Buffer]) -> None:
        key = self._key(name)
        body = b"".join(memoryview(p).cast("B") for p in parts)
        try:
            if len(body) < self._multipart_threshold:
                self._client.put_object(Bucket=self.bucket, Key=key, Body=body)
            else:
                self._client.upload_fileobj(io.BytesIO(body), self.bucket, key, Config=self._transfer)
        except _FAILURES as err:
            raise TierError(f"cannot write s3://{self.bucket}/{key}: {err}") from err

    def get(self, name: str) -> np.ndarray | None:
        key = self._key(name)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            size = response["ContentLength"]
            buf = np.empty(size, dtype=np.uint8)
            view = memoryview(buf)
            got = 0
            with response["Body"] as body:
                while got < size:
                    n = body.readinto(view[got:])
                    if not n:
                        break
                    got += n
        except _FAILURES as err:
            if _is_not_found(err):
                return None
            raise TierError(f"cannot read s3://{self.bucket}/{key}: {err}") from err
        if got != size:
            raise TierError(f"s3://{self.bucket}/{key} ended after {got} of {size} bytes")
        return buf

    def exists(self, name: str) -> bool:
        key = self._key(name)
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except _FAILURES as err:
            if _is_not_found(err):
                return False
            raise TierError(f"cannot stat s3://{self.bucket}/{key}: {err}") from err
        return True

    def delete(self, name: str) -> None:
        self.delete_many([name])

    def delete_many(self, names: Sequence[str]) -> None:
        keys = [self._key(n) for n in names]
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": k} for k in keys[start : start + _DELETE_BATCH]]
            try:
                response = self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except _FAILURES as err:
                raise TierError(f"cannot delete from s3://{self.bucket}: {err}") from err
            if response.get("Errors"):
                raise TierError(f"S3 refused to delete {response['Errors'][0]}")

    def list(self, prefix: str) -> list[str]:
        names = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key_prefix(prefix)
            )
            for page in pages:
                names.extend(self._name(obj["Key"]) for obj in page.get("Contents", []))
        except _FAILURES as err:
            raise TierError(f"cannot list s3://{self.bucket}/{self.prefix}: {err}") from err
        return sorted(names)

    def _key_prefix(self, prefix: str) -> str:
        return f"{self.prefix}/{prefix}" if self.prefix else prefix
