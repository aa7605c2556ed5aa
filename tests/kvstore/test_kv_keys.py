"""Chunk keys: stable content addresses, scoped by tenant and cache_salt."""

from __future__ import annotations

from kvstore.keys import cache_scope, chunk_key, is_chunk_key

FP = "f" * 32


def test_unscoped_keys_are_the_plain_content_address():
    assert chunk_key(FP, [1, 2, 3]) == chunk_key(FP, [1, 2, 3], None) == chunk_key(FP, (1, 2, 3))
    assert chunk_key(FP, [1, 2, 3]) == "9ed6cdece63322403332550a842d1660"  # pinned: stored chunks stay valid
    assert is_chunk_key(chunk_key(FP, [1, 2, 3]))


def test_every_scope_has_keys_of_its_own():
    scopes = [None, cache_scope("alice", None), cache_scope("bob", None), cache_scope(None, "s"),
              cache_scope("alice", "s"), cache_scope("s", None), cache_scope("alice", "")]
    assert cache_scope(None, None) is None
    assert len(set(scopes)) == len(scopes)  # a tenant named like a salt is another scope
    keys = {chunk_key(FP, [7, 8], scope) for scope in scopes}
    assert len(keys) == len(scopes)
    assert chunk_key(FP, [7, 8], cache_scope("alice", "s")) == chunk_key(FP, [7, 8], cache_scope("alice", "s"))
