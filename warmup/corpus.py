"""A warm-up corpus: documents ``{"id", "text"}`` read as a stream from JSONL or Parquet.

    PATH               one file: .jsonl / .ndjson (optionally .gz) or .parquet
    DIR                every such file below it, in path order (other files are ignored)
    s3://BUCKET/KEY    one object, or every such object under the prefix

Memory stays bounded: JSONL is read line by line, Parquet one batch of rows at a time. A record
that is not a usable document (invalid JSON, bytes that are not UTF-8, ``id`` or ``text``
missing, of the wrong type or empty) comes out as a :class:`BadRecord` naming where it is,
never as an exception; so does a file that stops being readable halfway. Ids are strings (an
integer id is taken as its decimal string), as the documents API's ``{"id": ...}`` is.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from kvstore.config import StoreConfig
from documents.registry import MAX_DOC_ID_BYTES

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
PARQUET_SUFFIXES = (".parquet",)
READ_BUFFER_BYTES = 1 << 20
PARQUET_BATCH_ROWS = 256


@dataclass(frozen=True, slots=True)
class CorpusDocument:
    """One document to warm up."""

    doc_id: str
    text: str


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A record (or the unreadable rest of a file) that was skipped, and why."""

    where: str  # "PATH:LINE" for JSONL, "PATH:row N" for Parquet, "PATH" for a whole file
    reason: str


@dataclass(frozen=True)
class S3Access:
    """How to reach S3 for the corpus (credentials come from the standard AWS chain).

    Attributes:
        endpoint_url: an S3-compatible endpoint (``http://127.0.0.1:9000``); "" for AWS.
        region: "" lets the AWS SDK resolve it.
        connect_timeout_s: TCP connect timeout of one request.
        request_timeout_s: timeout of one request.
        max_attempts: attempts per request (the SDK's standard retry strategy).
    """

    endpoint_url: str = ""
    region: str = ""
    connect_timeout_s: float = 2.0
    request_timeout_s: float = 30.0
    max_attempts: int = 3

    @classmethod
    def like_store(cls, store: StoreConfig, endpoint_url: str | None = None) -> S3Access:
        """The store's endpoint, region, timeouts and retries (``endpoint_url`` overrides)."""
        return cls(store.s3_endpoint_url if endpoint_url is None else endpoint_url, store.s3_region,
                   store.s3_connect_timeout_s, store.s3_read_timeout_s, store.s3_max_attempts)

    def filesystem(self) -> pafs.S3FileSystem:
        kwargs: dict[str, Any] = {
            "connect_timeout": self.connect_timeout_s,
            "request_timeout": self.request_timeout_s,
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=self.max_attempts),
        }
        if self.region:
            kwargs["region"] = self.region
        if self.endpoint_url:
            url = urlparse(self.endpoint_url)
            if url.scheme not in ("http", "https") or not url.netloc:
                raise ValueError(f"S3 endpoint {self.endpoint_url!r} must look like http(s)://HOST[:PORT]")
            kwargs.update(endpoint_override=url.netloc, scheme=url.scheme)
        return pafs.S3FileSystem(**kwargs)


def _format_of(path: str) -> str | None:
    lower = path.lower()
    if lower.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


class _NotUtf8:
    """Stands for a binary value that does not decode as UTF-8."""


def check_record(fields: Any) -> CorpusDocument | str:
    """The document a parsed record stands for, or the reason it is not one."""
    if not isinstance(fields, dict):
        return f"a record must be an object with 'id' and 'text', got {type(fields).__name__}"
    for name in ("id", "text"):
        if fields.get(name) is None:
            return f"missing '{name}'"
    doc_id, text = fields["id"], fields["text"]
    for name, value in (("id", doc_id), ("text", text)):
        if isinstance(value, _NotUtf8):
            return f"'{name}' is not UTF-8"
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        return f"'id' must be a string or an integer, got {type(doc_id).__name__}"
    doc_id = str(doc_id)
    if not doc_id:
        return "empty 'id'"
    if not isinstance(text, str):
        return f"'text' must be a string, got {type(text).__name__}"
    if not text.strip():
        return "empty 'text'"
    for name, value in (("id", doc_id), ("text", text)):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"'{name}' is not valid Unicode (a lone surrogate)"
    if len(doc_id.encode()) > MAX_DOC_ID_BYTES:
        return f"'id' is longer than {MAX_DOC_ID_BYTES} UTF-8 bytes"
    return CorpusDocument(doc_id, text)


class Corpus:
    """The documents of a file, a directory or an S3 prefix, streamed in path order.

    Args:
        uri: a local path or ``s3://bucket/key-or-prefix``.
        s3: how to reach S3 (only for ``s3://`` URIs).
        parquet_batch_rows: rows read from a Parquet file at once.

    Raises:
        ValueError: nothing is at ``uri``, a single file has an unknown suffix, or a directory
            holds no corpus files.
    """

    def __init__(self, uri: str, s3: S3Access | None = None, parquet_batch_rows: int = PARQUET_BATCH_ROWS):
        self.uri = uri
        self.parquet_batch_rows = parquet_batch_rows
        if uri.startswith("s3://"):
            self._fs: pafs.FileSystem = (s3 or S3Access()).filesystem()
            self._root, self._scheme = uri[len("s3://"):].rstrip("/"), "s3://"
        else:
            self._fs, self._root, self._scheme = pafs.LocalFileSystem(), str(uri), ""
        self.files = self._list()

    def _list(self) -> list[str]:
        try:
            info = self._fs.get_file_info(self._root)
            if info.type == pafs.FileType.File:
                if _format_of(info.path) is None:
                    raise ValueError(f"{self.uri}: unknown corpus format; valid suffixes: "
                                     f"{', '.join(JSONL_SUFFIXES + PARQUET_SUFFIXES)}")
                return [info.path]
            if info.type != pafs.FileType.Directory:
                raise ValueError(f"{self.uri}: no such file or directory")
            found = self._fs.get_file_info(pafs.FileSelector(self._root, recursive=True))
        except OSError as e:
            raise ValueError(f"{self.uri}: cannot list the corpus: {e}") from e
        files = sorted(f.path for f in found if f.type == pafs.FileType.File and _format_of(f.path) is not None)
        if not files:
            raise ValueError(f"{self.uri}: no corpus files (valid suffixes: "
                             f"{', '.join(JSONL_SUFFIXES + PARQUET_SUFFIXES)})")
        return files

    def num_rows(self) -> int | None:
        """Records in the corpus when every file is Parquet (read from the footers), else None."""
        if any(_format_of(f) != "parquet" for f in self.files):
            return None
        try:
            return sum(pq.ParquetFile(self._fs.open_input_file(f)).metadata.num_rows for f in self.files)
        except (OSError, pa.ArrowException):
            return None

    def __iter__(self) -> Iterator[CorpusDocument | BadRecord]:
        for path in self.files:
            name = self._scheme + path
            if _format_of(path) == "jsonl":
                yield from self._jsonl(path, name)
            else:
                yield from self._parquet(path, name)

    def _jsonl(self, path: str, name: str) -> Iterator[CorpusDocument | BadRecord]:
        line_no = 0
        try:
            with self._fs.open_input_stream(path) as raw:  # .gz is decompressed by suffix
                for line_no, line in enumerate(io.BufferedReader(raw, READ_BUFFER_BYTES), start=1):
                    if not line.strip():
                        continue
                    yield _jsonl_record(line, f"{name}:{line_no}")
        except (OSError, pa.ArrowException) as e:
            yield BadRecord(name, f"unreadable after line {line_no}: {e}")

    def _parquet(self, path: str, name: str) -> Iterator[CorpusDocument | BadRecord]:
        row = 0
        try:
            file = pq.ParquetFile(self._fs.open_input_file(path))
            columns = file.schema_arrow.names
            missing = [c for c in ("id", "text") if c not in columns]
            if missing:
                yield BadRecord(name, f"no column {missing[0]!r}; columns: {', '.join(columns)}")
                return
            for batch in file.iter_batches(batch_size=self.parquet_batch_rows, columns=["id", "text"]):
                ids = _python_values(batch.column("id"))
                texts = _python_values(batch.column("text"))
                for doc_id, text in zip(ids, texts):
                    doc = check_record({"id": doc_id, "text": text})
                    yield doc if isinstance(doc, CorpusDocument) else BadRecord(f"{name}:row {row}", doc)
                    row += 1
        except (OSError, pa.ArrowException) as e:
            yield BadRecord(name, f"unreadable after row {row}: {e}")


def _python_values(column: pa.Array) -> list[Any]:
    """A column as Python values; strings go through bytes, so one bad value spoils only its row."""
    if pa.types.is_string(column.type):
        column = column.view(pa.binary())
    elif pa.types.is_large_string(column.type):
        column = column.view(pa.large_binary())
    values = column.to_pylist()
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        return [_decode(v) for v in values]
    return values


def _decode(value: bytes | None) -> str | _NotUtf8 | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return _NotUtf8()


def _jsonl_record(line: bytes, where: str) -> CorpusDocument | BadRecord:
    try:
        text = line.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark may lead the file
    except UnicodeDecodeError as e:
        return BadRecord(where, f"not UTF-8 (byte {e.start})")
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as e:
        return BadRecord(where, f"invalid JSON: {e.msg} at column {e.colno}")
    doc = check_record(fields)
    return doc if isinstance(doc, CorpusDocument) else BadRecord(where, doc)
