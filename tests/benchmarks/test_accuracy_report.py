"""The families the accuracy plot draws its curves by."""

from __future__ import annotations

from benchmarks.accuracy_report import family_of
from engine.segments import LinkPolicy


def test_family_keeps_every_field_but_the_budget():
    assert family_of(LinkPolicy("naive", tail=0.25), "as_given") == "naive"
    assert family_of(LinkPolicy("query", ratio=0.2), "lexical") == "query@lexical"
    assert family_of(LinkPolicy("legolink", k=16, chunk_bos=True, tail=0.15), "as_given") == "legolink+bos"
