"""Answer containment and the truncated first-token KL."""

from __future__ import annotations

import math

import pytest

from evals.scoring import answer_correct, normalize_answer, truncated_kl


def test_normalize_answer():
    assert normalize_answer("  The Mayor is  Vela-Morn!\n") == "the mayor is vela morn"
    assert normalize_answer("It has 12,500 employees.") == "it has 12500 employees"


@pytest.mark.parametrize("output, gold, right", [
    ("Vela Morn lives in Ostrin.", "Ostrin", True),
    ("ostrin", "Ostrin", True),
    ("The population is 12,000.", "12000", True),
    ("It was founded in 19050.", "1905", False),
    ("Ostrinia", "Ostrin", False),
    ("established on 3 May 1901", "3 May 1901", True),
    ("", "pilot", False),
])
def test_answer_correct(output, gold, right):
    assert answer_correct(output, gold) is right


def logprobs(probs: dict[int, float]) -> dict[int, float]:
    return {t: math.log(p) for t, p in probs.items()}


def test_truncated_kl_of_identical_listings_is_exactly_zero():
    p = logprobs({5: 0.6, 9: 0.3, 2: 0.05})
    assert truncated_kl(p, dict(p)) == 0.0


def test_truncated_kl_matches_the_coarsened_distributions():
    p = logprobs({1: 0.5, 2: 0.3})  # rest 0.2
    q = logprobs({2: 0.4, 3: 0.35, 1: 0.1})  # rest 0.15: token 1 listed, token 3 falls in P's rest
    want = 0.5 * math.log(0.5 / 0.1) + 0.3 * math.log(0.3 / 0.4) + 0.2 * math.log(0.2 / (1 - 0.1 - 0.4))
    assert truncated_kl(p, q) == pytest.approx(want, rel=1e-12)


def test_tokens_missing_from_the_compared_listing_get_its_smallest_probability():
    p = logprobs({1: 0.7, 4: 0.2})
    q = logprobs({2: 0.6, 3: 0.3})  # neither of P's tokens is listed: both get 0.3
    want = 0.7 * math.log(0.7 / 0.3) + 0.2 * math.log(0.2 / 0.3) + 0.1 * math.log(0.1 / (1 - 0.3 - 0.3))
    assert truncated_kl(p, q) == pytest.approx(want, rel=1e-12)
    assert truncated_kl(p, q) > truncated_kl(p, logprobs({1: 0.6, 4: 0.3}))
