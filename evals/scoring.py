"""Scoring generated answers: containment of the gold answer, and a first-token KL.

Pure functions on strings and ``{token_id: logprob}`` dicts (the engine's ``top_logprobs``).
"""

from __future__ import annotations

import math
import re

_DIGIT_COMMA = re.compile(r"(?<=\d),(?=\d)")
_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalize_answer(text: str) -> str:
    """Lowercase words separated by single spaces: punctuation and thousands separators go."""
    return _NON_WORD.sub(" ", _DIGIT_COMMA.sub("", text.lower())).strip()


def answer_correct(output: str, gold: str) -> bool:
    """Whether the normalized gold answer occurs in the normalized output as whole words
    (``1905`` is not found in ``19050``)."""
    return f" {normalize_answer(gold)} " in f" {normalize_answer(output)} "


def truncated_kl(p_top: dict[int, float], q_top: dict[int, float]) -> float:
    """KL(P || Q) of two next-token distributions known only by their top-N logprobs.

    Both distributions are coarsened to N + 1 outcomes: P's top-N tokens, and one bucket for
    the rest of the vocabulary (its mass is 1 minus the listed mass). A token of P's top-N
    missing from Q's top-N gets Q's smallest listed probability, an upper bound on its true
    value. Coarsening can only lower a KL, so this approximates the full-vocabulary KL from
    below when Q's listing covers P's top-N; identical inputs give exactly 0.

    Args:
        p_top: the reference's top-N ``{token_id: logprob}``.
        q_top: the compared distribution's top-N ``{token_id: logprob}``.
    """
    q_floor = min(q_top.values())
    kl, p_listed, q_listed = 0.0, 0.0, 0.0
    for token, lp in p_top.items():
        lq = q_top.get(token, q_floor)
        p = math.exp(lp)
        kl += p * (lp - lq)
        p_listed += p
        q_listed += math.exp(lq)
    p_rest, q_rest = max(0.0, 1.0 - p_listed), max(0.0, 1.0 - q_listed)
    if p_rest > 0.0:
        # Q's rest can only vanish through rounding when its listing holds all its mass.
        kl += p_rest * (math.log(p_rest) - math.log(max(q_rest, 1e-12)))
    return kl
