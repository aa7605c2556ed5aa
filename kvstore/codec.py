"""The stored-chunk codec: a checked msgpack header in front of the raw KV bytes.

Layout of one stored chunk (little-endian)::

    0        4            8               12         16              16+H      P            P+N
    | magic  | header_len | header_xxh32  | reserved | msgpack header | 0 pad   | payload     |
    | "EPKV" | H (u32)    | (u32)         | 0 (u32)  | (H bytes)      | to 64 B | N raw bytes |

The payload is the KV tensor ``[num_layers, 2, num_tokens, num_kv_heads, head_dim]`` in C order
(dim 1: 0 = K before RoPE, 1 = V), starting at a 64-byte boundary P so it can be viewed in place.
Every byte is covered by a check: the prefix fields and zero padding are checked directly, the
header by its xxh32 in the prefix, the payload by the header's xxh3-64. Decoding is zero-copy:
the payload comes back as a view of the caller's buffer. Pure: numpy, msgpack and xxhash only.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import NamedTuple

import msgpack
import numpy as np
import xxhash

from kvstore.errors import CorruptChunkError
from kvstore.keys import ChunkKey

FORMAT_VERSION = 1
ROPE_CONVENTION = "nope"  # K is stored before RoPE (ARCHITECTURE.md §2, "compile")
MAGIC = b"EPKV"
PAYLOAD_ALIGN = 64
DTYPE_ITEMSIZE = {"float32": 4, "bfloat16": 2, "float16": 2}
KV_NDIM = 5

_PREFIX = struct.Struct("<4sIII")  # magic, header_len, header_xxh32, reserved
_MAX_HEADER_BYTES = 64 * 1024
_HEADER_FIELDS = frozenset(
    ("format_version", "key", "model_fingerprint", "dtype", "shape", "rope", "payload_nbytes", "payload_xxh3_64")
)


@dataclass(frozen=True, slots=True)
class ChunkHeader:
    """What the header of one stored chunk says."""

    key: ChunkKey
    model_fingerprint: str
    dtype: str  # one of DTYPE_ITEMSIZE
    shape: tuple[int, ...]  # [num_layers, 2, num_tokens, num_kv_heads, head_dim]
    payload_xxh3_64: int
    rope: str = ROPE_CONVENTION
    format_version: int = FORMAT_VERSION

    @property
    def payload_nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_ITEMSIZE[self.dtype]

    @property
    def num_tokens(self) -> int:
        return self.shape[2]


class EncodedChunk(NamedTuple):
    """A stored chunk as two buffers, so writers can send the payload without joining copies."""

    head: bytes  # prefix + msgpack header + zero padding; len(head) % PAYLOAD_ALIGN == 0
    payload: memoryview  # the raw KV bytes, a view of the source tensor's memory

    @property
    def nbytes(self) -> int:
        return len(self.head) + self.payload.nbytes


class DecodedChunk(NamedTuple):
    header: ChunkHeader
    payload: np.ndarray  # [payload_nbytes] uint8, a view of the decoded buffer


def payload_checksum(payload: memoryview | np.ndarray) -> int:
    """xxh3-64 of the raw payload bytes (about 30 GB/s; a memcpy of the same bytes is ~10)."""
    return xxhash.xxh3_64_intdigest(payload)


def check_shape(dtype: str, shape: tuple[int, ...]) -> None:
    """Raise ValueError unless ``dtype``/``shape`` describe a chunk KV tensor."""
    if dtype not in DTYPE_ITEMSIZE:
        raise ValueError(f"KV dtype {dtype!r} is not one of {', '.join(DTYPE_ITEMSIZE)}")
    if len(shape) != KV_NDIM or shape[1] != 2 or any(int(d) <= 0 for d in shape):
        raise ValueError(f"KV shape must be [num_layers, 2, num_tokens, num_kv_heads, head_dim] > 0, got {list(shape)}")


def make_header(
    key: ChunkKey, model_fingerprint: str, dtype: str, shape: tuple[int, ...], payload: memoryview
) -> ChunkHeader:
    """Describe ``payload`` (the C-order bytes of a KV tensor) and checksum it."""
    check_shape(dtype, shape)
    header = ChunkHeader(key, model_fingerprint, dtype, tuple(int(d) for d in shape), payload_checksum(payload))
    if header.payload_nbytes != payload.nbytes:
        raise ValueError(
            f"payload has {payload.nbytes} bytes, shape {list(shape)} of {dtype} needs {header.payload_nbytes}"
        )
    return header


def encode_head(header: ChunkHeader) -> bytes:
    """The framed header block (prefix, msgpack header, zero padding) that precedes the payload."""
    body = msgpack.packb(
        {
            "format_version": header.format_version,
            "key": header.key,
            "model_fingerprint": header.model_fingerprint,
            "dtype": header.dtype,
            "shape": list(header.shape),
            "rope": header.rope,
            "payload_nbytes": header.payload_nbytes,
            "payload_xxh3_64": header.payload_xxh3_64,
        }
    )
    used = _PREFIX.size + len(body)
    padding = -used % PAYLOAD_ALIGN
    return _PREFIX.pack(MAGIC, len(body), xxhash.xxh32_intdigest(body), 0) + body + bytes(padding)


def encode(
    key: ChunkKey, model_fingerprint: str, dtype: str, shape: tuple[int, ...], payload: memoryview
) -> EncodedChunk:
    """Frame ``payload`` for storage. No payload copy: the result views the caller's memory."""
    payload = memoryview(payload).cast("B")
    return EncodedChunk(encode_head(make_header(key, model_fingerprint, dtype, shape, payload)), payload)


def _parse_head(view: memoryview) -> tuple[ChunkHeader, int]:
    """Parse and check the framed header at the start of ``view``; return it and its length."""
    if view.nbytes < _PREFIX.size:
        raise CorruptChunkError(f"stored chunk is {view.nbytes} bytes, shorter than its {_PREFIX.size}-byte prefix")
    magic, header_len, header_sum, reserved = _PREFIX.unpack_from(view)
    if magic != MAGIC or reserved != 0:
        raise CorruptChunkError("stored chunk has a bad magic number or reserved field")
    if header_len > _MAX_HEADER_BYTES:
        raise CorruptChunkError(f"stored chunk header length {header_len} is implausible")
    head_len = _PREFIX.size + header_len
    head_len += -head_len % PAYLOAD_ALIGN
    if view.nbytes < head_len:
        raise CorruptChunkError("stored chunk is truncated inside its header")
    body = view[_PREFIX.size : _PREFIX.size + header_len]
    if xxhash.xxh32_intdigest(body) != header_sum:
        raise CorruptChunkError("stored chunk header checksum mismatch")
    if any(view[_PREFIX.size + header_len : head_len]):
        raise CorruptChunkError("stored chunk header padding is not zero")
    return _header_from_fields(msgpack.unpackb(body)), head_len


def _header_from_fields(fields: object) -> ChunkHeader:
    if not isinstance(fields, dict) or set(fields) != _HEADER_FIELDS:
        raise CorruptChunkError("stored chunk header does not have the expected fields")
    if fields["format_version"] != FORMAT_VERSION:
        raise CorruptChunkError(f"stored chunk format {fields['format_version']!r}, this code reads {FORMAT_VERSION}")
    if fields["rope"] != ROPE_CONVENTION:
        raise CorruptChunkError(f"stored chunk RoPE convention {fields['rope']!r}, expected {ROPE_CONVENTION!r}")
    shape = fields["shape"]
    if not isinstance(shape, list) or not all(type(d) is int for d in shape):
        raise CorruptChunkError(f"stored chunk shape {shape!r} is not a list of ints")
    try:
        check_shape(fields["dtype"], tuple(shape))
    except (ValueError, TypeError) as err:
        raise CorruptChunkError(f"stored chunk header is invalid: {err}") from err
    header = ChunkHeader(
        key=fields["key"],
        model_fingerprint=fields["model_fingerprint"],
        dtype=fields["dtype"],
        shape=tuple(shape),
        payload_xxh3_64=fields["payload_xxh3_64"],
    )
    if fields["payload_nbytes"] != header.payload_nbytes:
        raise CorruptChunkError("stored chunk payload size disagrees with its shape and dtype")
    return header


def _check_identity(header: ChunkHeader, key: ChunkKey, model_fingerprint: str) -> None:
    if header.key != key:
        raise CorruptChunkError(f"stored chunk is for key {header.key!r}, not {key!r}")
    if header.model_fingerprint != model_fingerprint:
        raise CorruptChunkError(f"stored chunk is for model {header.model_fingerprint!r}, not {model_fingerprint!r}")


def decode_head(head: bytes | memoryview, key: ChunkKey, model_fingerprint: str) -> ChunkHeader:
    """Check a header block stored apart from its payload (the object-store tier keeps both)."""
    view = memoryview(head).cast("B")
    header, head_len = _parse_head(view)
    if head_len != view.nbytes:
        raise CorruptChunkError("stored chunk header block has trailing bytes")
    _check_identity(header, key, model_fingerprint)
    return header


def check_payload(header: ChunkHeader, payload: np.ndarray, verify_checksum: bool = True) -> None:
    """Check a payload against its header: size always, xxh3-64 when ``verify_checksum``."""
    if payload.nbytes != header.payload_nbytes:
        raise CorruptChunkError(f"stored chunk payload is {payload.nbytes} bytes, header says {header.payload_nbytes}")
    if verify_checksum and payload_checksum(payload) != header.payload_xxh3_64:
        raise CorruptChunkError("stored chunk payload checksum mismatch")


def decode(buf: bytes | bytearray | memoryview, key: ChunkKey, model_fingerprint: str) -> DecodedChunk:
    """Check every field and the checksum of one stored chunk; view its payload in place.

    Args:
        buf: the whole stored object. A writable buffer gives a writable payload view.
        key: the key it was fetched under (the header must name the same key).
        model_fingerprint: the reader's model fingerprint (the header must match).

    Raises:
        CorruptChunkError: on any mismatch; the bytes must then be treated as a miss.
    """
    view = memoryview(buf).cast("B")
    header, head_len = _parse_head(view)
    _check_identity(header, key, model_fingerprint)
    payload = np.frombuffer(view, dtype=np.uint8, offset=head_len)
    check_payload(header, payload)
    return DecodedChunk(header, payload)
