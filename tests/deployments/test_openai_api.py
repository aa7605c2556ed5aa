"""The official openai client against the app: completions and chat, streamed and not, with
documents and link policies through extra_body; text equals the engine's own output."""

from __future__ import annotations

import httpx
import pytest

from engine import LinkPolicy, SamplingParams

from tests.support.serving import SERVED_MODEL
from tests.support.tiny_chat_model import document

DOCS = [document(100 + i) for i in range(3)]


@pytest.fixture(scope="module")
def client(base_url):
    from openai import OpenAI

    return OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=60)


def expected(engine, layout, sampling: SamplingParams, policy: LinkPolicy | None = None):
    return engine.generate([list(layout.segments)], sampling, policy)[0]


def stream_text(events) -> tuple[str, list]:
    parts, finals = [], []
    for event in events:
        for choice in event.choices:
            text = choice.text if hasattr(choice, "text") else choice.delta.content
            parts.append(text or "")
            if choice.finish_reason:
                finals.append(choice.finish_reason)
    return "".join(parts), finals


def test_completion_plain_prompt_equals_engine(client, reference_engine, builder):
    out = client.completions.create(model=SERVED_MODEL, prompt="The river and the stone", max_tokens=12,
                                    temperature=0)
    ref = reference_engine.generate(["The river and the stone"], SamplingParams(max_tokens=12, temperature=0.0))[0]
    assert out.choices[0].text == ref.text
    assert out.choices[0].finish_reason == "length"
    assert out.usage.prompt_tokens == len(reference_engine.tokenizer.encode("The river and the stone"))
    assert out.usage.completion_tokens == 12
    assert out.usage.total_tokens == out.usage.prompt_tokens + 12


def test_completion_with_documents_and_policy(client, reference_engine, builder):
    docs = [builder.chunk_document(d) for d in DOCS]
    layout = builder.completion(" Question: which harbor?\nAnswer:", docs)
    policy = {"name": "legolink", "k": 4}
    out = client.completions.create(
        model=SERVED_MODEL, prompt=" Question: which harbor?\nAnswer:", max_tokens=10, temperature=0,
        extra_body={"documents": [{"text": d} for d in DOCS], "link_policy": policy})
    ref = expected(reference_engine, layout, SamplingParams(max_tokens=10, temperature=0.0), LinkPolicy("legolink", 4))
    assert out.choices[0].text == ref.text
    assert out.usage.prompt_tokens == layout.routing_hint.total_tokens
    cache = out.usage.model_extra["cache"]
    assert cache["chunk_hit_tokens"] + cache["compiled_tokens"] == sum(d.num_tokens for d in docs)


def test_completion_stream_equals_non_stream_with_seeded_sampling(client, reference_engine):
    kwargs = dict(model=SERVED_MODEL, prompt="Lantern and copper", max_tokens=14, temperature=0.9, seed=11, top_p=0.95)
    whole = client.completions.create(**kwargs)
    text, finals = stream_text(client.completions.create(**kwargs, stream=True))
    ref = reference_engine.generate(["Lantern and copper"],
                                    SamplingParams(max_tokens=14, temperature=0.9, seed=11, top_p=0.95))[0]
    assert text == whole.choices[0].text == ref.text
    assert finals == ["length"]


def test_chat_with_documents_equals_engine(client, reference_engine, builder):
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Which garden?"}]
    docs = [builder.chunk_document(d) for d in DOCS]
    layout = builder.chat(messages, docs)
    out = client.chat.completions.create(model=SERVED_MODEL, messages=messages, max_tokens=9, temperature=0,
                                         extra_body={"documents": [{"text": d} for d in DOCS]})
    ref = expected(reference_engine, layout, SamplingParams(max_tokens=9, temperature=0.0))
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].message.content == ref.text
    assert out.object == "chat.completion"


def test_chat_stream_with_usage(client, reference_engine, builder):
    messages = [{"role": "user", "content": "Where is the meadow?"}]
    layout = builder.chat(messages, [builder.chunk_document(DOCS[0])])
    events = list(client.chat.completions.create(
        model=SERVED_MODEL, messages=messages, max_tokens=8, temperature=0, stream=True,
        stream_options={"include_usage": True},
        extra_body={"documents": [{"text": DOCS[0]}], "link_policy": {"name": "full"}}))
    text, finals = stream_text(events)
    ref = expected(reference_engine, layout, SamplingParams(max_tokens=8, temperature=0.0), LinkPolicy("full"))
    assert text == ref.text
    assert finals == ["length"]
    assert events[0].choices[0].delta.role == "assistant"
    assert all(e.usage is None for e in events[:-1])
    assert events[-1].choices == []
    assert events[-1].usage.prompt_tokens == layout.routing_hint.total_tokens
    assert events[-1].usage.completion_tokens == 8


def test_stop_string_and_max_completion_tokens(client, reference_engine):
    ref = reference_engine.generate(["Copper harbor"], SamplingParams(max_tokens=12, temperature=0.0))[0]
    stop = ref.text[3:5]
    assert stop and stop in ref.text
    out = client.completions.create(model=SERVED_MODEL, prompt="Copper harbor", max_tokens=12, temperature=0,
                                    stop=[stop])
    assert out.choices[0].text == ref.text[: ref.text.index(stop)]
    assert out.choices[0].finish_reason == "stop"
    assert out.choices[0].model_extra["stop_reason"] == stop  # vLLM's field


def test_models_and_health(client, base_url):
    assert [m.id for m in client.models.list().data] == [SERVED_MODEL]
    assert httpx.get(base_url + "/health").json() == {"status": "ok"}


def test_replica_header_names_a_replica(base_url):
    r = httpx.post(base_url + "/v1/completions", json={"model": SERVED_MODEL, "prompt": "Stone", "max_tokens": 2})
    assert r.status_code == 200
    assert r.headers["x-epic-replica"]


def test_lexical_document_order_links_the_matching_document_last(client, reference_engine, builder):
    texts = ["The ferry leaves from the north harbor at nine.\n", "The mill grinds wheat by the river.\n",
             "The lantern on the pier is copper.\n"]
    question = "Which lantern is on the pier?"
    docs = [builder.chunk_document(t) for t in texts]
    assert builder.ordered(docs, "lexical", question) == [docs[0], docs[1], docs[2]]
    assert builder.ordered(docs[::-1], "lexical", question) == [docs[1], docs[0], docs[2]]
    assert builder.ordered(docs, "retrieval", question) == docs[::-1]
    policy = {"name": "naive", "tail": 0.3}
    sampling = SamplingParams(max_tokens=8, temperature=0.0, logprobs=True)
    messages = [{"role": "user", "content": question}]
    layout = builder.chat(messages, [docs[1], docs[0], docs[2]])
    ref = expected(reference_engine, layout, sampling, LinkPolicy("naive", tail=0.3))
    as_sent = expected(reference_engine, builder.chat(messages, docs[::-1]), sampling, LinkPolicy("naive", tail=0.3))
    out = client.chat.completions.create(
        model=SERVED_MODEL, messages=messages, max_tokens=8, temperature=0, logprobs=True,
        extra_body={"documents": [{"text": t} for t in texts[::-1]], "link_policy": policy,
                    "document_order": "lexical"})
    assert out.choices[0].message.content == ref.text
    # The served prompt is the reordered one: its logprobs, not those of the order sent.
    served = [c.logprob for c in out.choices[0].logprobs.content]
    assert served == pytest.approx(ref.logprobs, abs=1e-4)
    assert served != pytest.approx(as_sent.logprobs, abs=1e-3)
    assert out.usage.prompt_tokens == layout.routing_hint.total_tokens
    with pytest.raises(Exception, match="document_order"):
        client.chat.completions.create(model=SERVED_MODEL, messages=[{"role": "user", "content": question}],
                                       max_tokens=2, extra_body={"document_order": "best"})
