"""Relevance ordering: the documents most relevant to the question go last, next to it.

With position-independent caching the order of linked documents costs nothing, and small
models read the documents nearest the question best (and are misled by unrelated documents
between the relevant one and the question). Reordering changes the prompt the client sent, so
it is opt-in per request (``document_order``):

    as_given   the client's order (the default)
    retrieval  the client's order is a retriever's ranking, most relevant first: reversed
    lexical    ranked by word overlap with the question (BM25 weights over the request's own
               documents), most overlapping last; ties keep the client's order

Pure functions on strings: no tokenizer, no Ray, no FastAPI.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

DOCUMENT_ORDERS = ("as_given", "retrieval", "lexical")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# Words too common to say which document a question is about.
_STOPWORDS = frozenset(
    "a an and are as at be by did do does for from has have he her his how in is it its of on or she that the "
    "their them they this to was were what when where which who whom whose why will with you your".split())
_K1, _B = 1.2, 0.75


def words(text: str) -> list[str]:
    """Lower-cased content words."""
    return [w for w in (m.group().lower() for m in _WORD.finditer(text)) if w not in _STOPWORDS]


def lexical_scores(question: str, documents: Sequence[str]) -> list[float]:
    """BM25 score of each document for the question, with document frequencies over ``documents``."""
    docs = [Counter(words(d)) for d in documents]
    if not docs:
        return []
    mean_len = sum(sum(d.values()) for d in docs) / len(docs) or 1.0
    scores = []
    for d in docs:
        length = sum(d.values())
        score = 0.0
        for term in set(words(question)):
            tf = d.get(term, 0)
            if not tf:
                continue
            df = sum(1 for other in docs if term in other)
            idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
            score += idf * tf * (_K1 + 1) / (tf + _K1 * (1 - _B + _B * length / mean_len))
        scores.append(score)
    return scores


def document_order(order: str, question: str, documents: Sequence[str]) -> list[int]:
    """The permutation of ``documents`` (indices, new first) that ``order`` asks for.

    Raises:
        ValueError: an unknown order name.
    """
    if order not in DOCUMENT_ORDERS:
        raise ValueError(f"unknown document_order {order!r}; valid: {', '.join(DOCUMENT_ORDERS)}")
    n = len(documents)
    if order == "as_given":
        return list(range(n))
    if order == "retrieval":
        return list(reversed(range(n)))
    scores = lexical_scores(question, documents)
    return sorted(range(n), key=lambda i: scores[i])  # stable: ties keep the given order
