"""The RAG workload: seeded and deterministic, held-out entities only, documents of the
requested length with the answer in the answer documents, filler that states no fact."""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import asdict
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from evals import filler
from evals.rag_workload import WorkloadSpec, generate
from training import data

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 15  # tokens: about half of epic-tiny's longest filler sentence


@pytest.fixture(scope="module")
def count_tokens():
    tok = AutoTokenizer.from_pretrained(ROOT / "models" / "epic-tiny")
    return lambda text: len(tok.encode(text, add_special_tokens=False))


def dump(examples) -> bytes:
    return json.dumps([asdict(ex) for ex in examples]).encode()


def test_same_seed_gives_byte_identical_examples_and_other_seeds_differ(count_tokens):
    spec = WorkloadSpec(seed=7, num_examples=12, min_docs=2, max_docs=5, doc_tokens=150)
    first = dump(generate(spec, count_tokens))
    assert dump(generate(spec, count_tokens)) == first
    assert dump(generate(WorkloadSpec(8, 12, 2, 5, 150), count_tokens)) != first
    assert dump(generate(WorkloadSpec(7, 12, 2, 5, 200), count_tokens)) != first


@pytest.mark.parametrize("doc_tokens", [100, 250, 500])
def test_documents_have_the_requested_length_and_count(count_tokens, doc_tokens):
    examples = generate(WorkloadSpec(3, 20, 2, 10, doc_tokens), count_tokens)
    counts = [len(ex.documents) for ex in examples]
    assert min(counts) >= 2 and max(counts) <= 10 and len(set(counts)) > 3
    for ex in examples:
        for doc in ex.documents:
            assert abs(count_tokens(doc) - doc_tokens) <= TOLERANCE, (doc_tokens, count_tokens(doc), doc)
        assert len(set(ex.documents)) == len(ex.documents), "documents do not repeat"


def test_answer_is_in_the_answer_documents_in_a_permuted_order(count_tokens):
    examples = generate(WorkloadSpec(5, 60, 4, 8, 120, two_hop_fraction=0.5), count_tokens)
    kinds = [ex.kind for ex in examples]
    assert set(kinds) == {"single", "two_hop"}
    for ex in examples:
        assert len(ex.answer_documents) == (1 if ex.kind == "single" else 2)
        assert any(re.search(rf"\b{re.escape(ex.answer)}\b", ex.documents[i]) for i in ex.answer_documents), ex
        mentions = [i for i, d in enumerate(ex.documents) if re.search(rf"\b{re.escape(ex.entity)}\b", d)]
        # The question's entity is named by one document only, one of the answer documents.
        assert len(mentions) == 1 and mentions[0] in ex.answer_documents, ex
        assert ex.entity in ex.question
    # The documents are shuffled per example: answers sit at many positions, not always first.
    assert len({ex.answer_documents[0] for ex in examples}) >= 5


def test_two_hop_fraction_sets_the_mix(count_tokens):
    assert {ex.kind for ex in generate(WorkloadSpec(1, 20, 2, 4, 100, 0.0), count_tokens)} == {"single"}
    assert {ex.kind for ex in generate(WorkloadSpec(1, 20, 2, 4, 100, 1.0), count_tokens)} == {"two_hop"}


def test_only_held_out_entities_appear(count_tokens):
    text = " ".join(d + " " + ex.question for ex in generate(WorkloadSpec(2, 40, 2, 10, 150), count_tokens)
                    for d in ex.documents)
    english = set(re.findall(r"[A-Z][a-z]+", " ".join(
        filler.PLACES + filler.WEATHER_SUBJECTS + filler.PEOPLE_SUBJECTS + data._GENERIC + data._MONTHS
        + ("Works Company Group Labs Trading",) + tuple(t for _, s, q in data.ATTRIBUTES.values() for t in (s, q))
        + tuple(data.TWO_HOP.values()))))
    names = set(re.findall(r"\b[A-Z][a-z]+\b", text)) - english
    assert len(names) > 200

    def held_out(word: str) -> bool:
        return zlib.crc32(word.encode()) % 8 == 0

    # Country names are a held-out word + "ia".
    assert all(held_out(w) or (w.endswith("ia") and held_out(w[:-2])) for w in names), \
        sorted(w for w in names if not held_out(w))[:10]


def test_filler_names_no_fact_value_or_attribute():
    pieces = (filler.PLACES + filler.PLACE_PREDICATES + filler.WEATHER_SUBJECTS + filler.WEATHER_PREDICATES
              + filler.PEOPLE_SUBJECTS + filler.PEOPLE_PREDICATES + filler.CLOSINGS)
    words = set(re.findall(r"[a-z]+", " ".join(pieces).lower()))
    values = {v.lower() for v in data._JOBS + data._PRODUCTS + data._COLORS + data._MONTHS}
    attributes = {"born", "works", "years", "lives", "city", "company", "population", "country", "founded",
                  "river", "mayor", "makes", "employees", "headquarters", "established", "favourite", "job"}
    assert not {w for w in words if any(w.startswith(v) for v in values)} and not words & attributes
    assert not re.search(r"\d", " ".join(pieces))


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_examples=0), "num_examples"),
    (dict(min_docs=1, max_docs=4), "2 <= min <= max <= 10"),
    (dict(min_docs=5, max_docs=4), "2 <= min <= max <= 10"),
    (dict(max_docs=11), "2 <= min <= max <= 10"),
    (dict(doc_tokens=99), r"\[100, 500\]"),
    (dict(doc_tokens=501), r"\[100, 500\]"),
    (dict(two_hop_fraction=1.5), r"\[0, 1\]"),
])
def test_bad_specs_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WorkloadSpec(**{"seed": 0, "num_examples": 4, **kwargs})
