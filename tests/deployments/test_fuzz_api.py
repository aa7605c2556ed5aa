"""Property-based fuzzing of the HTTP API against the real Serve app: every generated body gets
a 4xx in OpenAI's error shape or a correct 200, never a 5xx, and the replicas stay up.

The default run is seeded (derandomized) and bounded; ``--hypothesis-profile=fuzz-long`` runs
thousands of bodies (profiles: tests/deployments/conftest.py)."""

from __future__ import annotations

from tests.support.api_fuzz import any_body, check_answer
from hypothesis import given
from tests.support.serving import SERVED_MODEL

TRIED: list[int] = []


@given(case=any_body())
def test_generated_bodies_get_a_4xx_or_a_200_never_a_5xx(http, case):
    endpoint, raw = case
    response = http.post(endpoint, content=raw, headers={"content-type": "application/json"})
    TRIED.append(response.status_code)
    check_answer(response.status_code, response.headers.get("content-type", ""), response.content)


def test_the_app_still_serves_after_the_fuzzing(http):
    assert http.get("/health").status_code == 200
    answer = http.post("/v1/chat/completions", json={
        "model": SERVED_MODEL, "max_tokens": 4, "temperature": 0,
        "messages": [{"role": "user", "content": "Which river?"}]})
    assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 4
