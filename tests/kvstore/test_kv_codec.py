"""The stored-chunk codec: bit-exact, zero-copy, and every corrupted byte is caught."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kvstore import codec
from kvstore.errors import CorruptChunkError
from kvstore.tensors import dtype_name, payload_view, tensor_from_payload

from tests.support.store import FP, key, make_kv, same_bits


def _encode(kv: torch.Tensor, k=None, fp: str = FP) -> bytearray:
    enc = codec.encode(k or key(0), fp, dtype_name(kv), tuple(kv.shape), payload_view(kv))
    return bytearray(enc.head) + bytearray(enc.payload)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_round_trip_is_bit_exact_and_zero_copy(dtype):
    kv = make_kv(1, dtype, num_tokens=7, num_kv_heads=3, head_dim=6)
    buf = _encode(kv)
    header, payload = codec.decode(buf, key(0), FP)
    assert header.dtype == dtype_name(kv) and header.shape == tuple(kv.shape) and header.num_tokens == 7
    assert header.rope == "nope" and header.format_version == codec.FORMAT_VERSION
    assert np.shares_memory(payload, np.frombuffer(buf, dtype=np.uint8))  # a view, not a copy
    out = tensor_from_payload(payload, header.dtype, header.shape)
    assert same_bits(out, kv)


def test_layout_aligns_payload_and_is_deterministic():
    kv = make_kv(2)
    enc = codec.encode(key(0), FP, "float32", tuple(kv.shape), payload_view(kv))
    assert len(enc.head) % codec.PAYLOAD_ALIGN == 0
    assert enc.nbytes == len(enc.head) + kv.nbytes
    assert enc.head[:4] == b"EPKV"
    assert _encode(kv) == _encode(kv.clone())
    assert np.shares_memory(np.frombuffer(enc.payload, dtype=np.uint8), kv.numpy())  # encode copies nothing


def test_every_single_byte_flip_is_detected():
    kv = make_kv(3, num_tokens=3, num_kv_heads=1, head_dim=4)
    good = _encode(kv)
    for i in range(len(good)):
        bad = bytearray(good)
        bad[i] ^= 0x01
        with pytest.raises(CorruptChunkError):
            codec.decode(bad, key(0), FP)


def test_truncated_or_extended_objects_are_detected():
    good = _encode(make_kv(4))
    for n in (0, 3, 15, 16, 100, len(good) - 64, len(good) - 1):
        with pytest.raises(CorruptChunkError):
            codec.decode(good[:n], key(0), FP)
    with pytest.raises(CorruptChunkError):
        codec.decode(good + b"\0", key(0), FP)


def test_other_key_or_model_fingerprint_is_refused():
    good = _encode(make_kv(5))
    with pytest.raises(CorruptChunkError, match="for key"):
        codec.decode(good, key(1), FP)
    foreign = _encode(make_kv(5), fp="another-model")
    with pytest.raises(CorruptChunkError, match="for model"):
        codec.decode(foreign, key(0), FP)


def test_header_stored_apart_from_payload():
    kv = make_kv(6, torch.bfloat16)
    payload = payload_view(kv)
    head = codec.encode_head(codec.make_header(key(0), FP, "bfloat16", tuple(kv.shape), payload))
    header = codec.decode_head(head, key(0), FP)
    codec.check_payload(header, payload)
    flipped = payload.copy()
    flipped[-1] ^= 0x80
    with pytest.raises(CorruptChunkError, match="checksum"):
        codec.check_payload(header, flipped)
    codec.check_payload(header, flipped, verify_checksum=False)  # size-only check passes
    with pytest.raises(CorruptChunkError, match="bytes"):
        codec.check_payload(header, payload[:-2], verify_checksum=False)
    with pytest.raises(CorruptChunkError, match="trailing"):
        codec.decode_head(head + bytes(64), key(0), FP)


@pytest.mark.parametrize(
    "dtype,shape,nbytes,match",
    [
        ("float64", (1, 2, 1, 1, 1), 8, "dtype"),
        ("float32", (1, 2, 1, 1), 8, "shape"),
        ("float32", (1, 3, 1, 1, 1), 12, "shape"),
        ("float32", (1, 2, 0, 1, 1), 0, "shape"),
        ("float32", (1, 2, 2, 1, 1), 8, "needs 16"),
    ],
)
def test_encode_rejects_bad_input(dtype, shape, nbytes, match):
    with pytest.raises(ValueError, match=match):
        codec.encode(key(0), FP, dtype, shape, memoryview(bytes(nbytes)))
