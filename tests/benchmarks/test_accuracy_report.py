"""Merging accuracy runs over the same prompts, and the families their curves are drawn by."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from accuracy_report import family_of, merge_runs  # noqa: E402

from engine.segments import LinkPolicy  # noqa: E402


def test_family_keeps_every_field_but_the_budget():
    assert family_of(LinkPolicy("naive", tail=0.25), "as_given") == "naive"
    assert family_of(LinkPolicy("query", ratio=0.2, granularity="chunk"), "lexical") == "query-chunk@lexical"
    assert family_of(LinkPolicy("legolink", k=16, chunk_bos=True, tail=0.15), "as_given") == "legolink+bos"
    assert family_of(LinkPolicy("naive", tail=0.15, temperature=0.8), "as_given") == "naive+ape-0.8-1"
    assert family_of(LinkPolicy("naive", chunk_context="prefix"), "as_given") == "naive+behind-prefix"


def run(full_text: str, labels: list[str]) -> dict:
    prompts = [{"question": "q?", "outputs": {"full": {"text": full_text}}}]
    return {"prompts": prompts, "policies": {label: {"label": label} for label in ["full", *labels]}}


def test_merge_takes_each_label_once_and_refuses_different_prompts():
    summary, families = merge_runs([run("a", ["naive:tail=0.15"]), run("a", ["naive:tail=0.15@lexical",
                                                                            "query:ratio=0.1"])])
    assert list(summary) == ["full", "naive:tail=0.15", "naive:tail=0.15@lexical", "query:ratio=0.1"]
    assert families["naive:tail=0.15@lexical"] == "naive@lexical" and families["query:ratio=0.1"] == "query"
    with pytest.raises(ValueError, match="not one comparison"):
        merge_runs([run("a", []), run("b", [])])
