"""Relevance ordering of a request's documents (pure)."""

from __future__ import annotations

import pytest

from deployments.document_order import document_order, lexical_scores, words

DOCS = ["Vela Morn lives in Ostrin. Vela Morn works as a pilot.",
        "The weather in spring is often mild and wet.",
        "Tobin Harle lives in Quarry Bay. Tobin Harle is 41 years old.",
        "Quarry Bay has a copper lantern on its pier."]


def test_words_drop_case_punctuation_and_stopwords():
    assert words("Where does Tobin Harle live?") == ["tobin", "harle", "live"]
    assert words("") == []


def test_lexical_order_puts_the_most_overlapping_document_last():
    q = "Where does Tobin Harle live?"
    scores = lexical_scores(q, DOCS)
    assert scores[0] == scores[1] == scores[3] == 0.0 and scores[2] > 0
    assert document_order("lexical", q, DOCS) == [0, 1, 3, 2]  # ties keep the given order
    # A rarer shared word weighs more than a common one: "quarry" is in two documents, "pier" in one.
    assert document_order("lexical", "What is on the pier of Quarry Bay?", DOCS) == [0, 1, 2, 3]


def test_as_given_and_retrieval_orders():
    assert document_order("as_given", "q", DOCS) == [0, 1, 2, 3]
    assert document_order("retrieval", "q", DOCS) == [3, 2, 1, 0]
    assert document_order("lexical", "q", []) == []
    with pytest.raises(ValueError, match="unknown document_order 'best'; valid: as_given, retrieval, lexical"):
        document_order("best", "q", DOCS)
