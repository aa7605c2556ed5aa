"""The families the accuracy plot draws its curves by."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from accuracy_report import family_of  # noqa: E402

from engine.segments import LinkPolicy  # noqa: E402


def test_family_keeps_every_field_but_the_budget():
    assert family_of(LinkPolicy("naive", tail=0.25), "as_given") == "naive"
    assert family_of(LinkPolicy("query", ratio=0.2), "lexical") == "query@lexical"
    assert family_of(LinkPolicy("legolink", k=16, chunk_bos=True, tail=0.15), "as_given") == "legolink+bos"
