"""RoutingHint: validation and the span order the index relies on."""

import pytest

from router.hint import RoutingHint


def test_spans_put_the_keyed_prefix_first_then_chunks_in_order():
    hint = RoutingHint(
        chunk_keys=["b" * 32, "a" * 32],
        chunk_tokens=[7, 3],
        prefix_tokens=5,
        prefix_key="p" * 32,
        total_tokens=20,
    )
    assert hint.chunk_keys == ("b" * 32, "a" * 32)
    assert list(hint.spans()) == [("p" * 32, 5), ("b" * 32, 7), ("a" * 32, 3)]
    assert hint.num_chunk_tokens == 10


def test_prefix_without_key_is_not_a_span():
    hint = RoutingHint(chunk_keys=("k",), chunk_tokens=(4,), prefix_tokens=9, total_tokens=13)
    assert list(hint.spans()) == [("k", 4)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"chunk_keys": ("a", "b"), "chunk_tokens": (1,), "total_tokens": 9}, "parallel"),
        ({"chunk_keys": ("a",), "chunk_tokens": (0,), "total_tokens": 9}, "at least one token"),
        ({"chunk_keys": ("",), "chunk_tokens": (1,), "total_tokens": 9}, "non-empty"),
        ({"prefix_tokens": -1, "total_tokens": 9}, "prefix_tokens"),
        ({"prefix_key": "p", "total_tokens": 9}, "prefix_key"),
        ({"chunk_keys": ("a",), "chunk_tokens": (8,), "prefix_tokens": 2, "total_tokens": 9},
         "total_tokens"),
    ],
)
def test_bad_hints_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RoutingHint(**kwargs)
