"""Prompt building without Ray: chat template cut around the documents, KVSplit, chunk keys."""

from __future__ import annotations

import pytest

from deployments.prompting import DEFAULT_DOCUMENTS_SYSTEM_PROMPT, DocumentWrapper, PromptBuilder
from engine.segments import prompt_token_ids
from kvstore.keys import chunk_key

from tests.support.tiny_chat_model import build_tokenizer, document

FP = "f" * 32
QUESTION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Which harbor?"}]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def builder(tokenizer):
    return PromptBuilder(tokenizer, FP, chunk_tokens=64)


def with_template(template: str):
    tok = build_tokenizer()
    tok.chat_template = template
    return tok


def test_wrapper_is_learned_from_the_template(builder):
    assert builder.template_wrapper == DocumentWrapper("Document: ", "\n")


def test_chat_prompt_is_the_template_rendering(builder, tokenizer):
    docs = [document(1, 2), document(2, 3)]
    layout = builder.chat(QUESTION, [builder.chunk_document(d) for d in docs])
    expected = tokenizer.apply_chat_template(QUESTION, documents=[{"text": d} for d in docs],
                                             add_generation_prompt=True, tokenize=True)["input_ids"]
    assert prompt_token_ids(layout.segments) == expected
    kinds = [s.kind for s in layout.segments]
    assert kinds == ["prefix", "chunk", "chunk", "text"]
    assert tokenizer.decode(layout.segments[0].token_ids) == "<s>Be brief.\n"
    assert tokenizer.decode(layout.segments[1].token_ids) == f"Document: {docs[0]}\n"
    assert tokenizer.decode(layout.segments[-1].token_ids) == "Question: Which harbor?\nAnswer:"
    documents = "".join(f"Document: {d}\n" for d in docs)
    assert layout.text == "<s>Be brief.\n" + documents + "Question: Which harbor?\nAnswer:"


def test_chunks_do_not_depend_on_position_or_endpoint(builder):
    a, b = builder.chunk_document(document(3)), builder.chunk_document(document(4, 9))
    assert len(b.chunk_token_ids) > 1  # longer than chunk_tokens: several chunks
    assert all(len(ids) <= 64 for ids in b.chunk_token_ids)
    first = builder.chat(QUESTION, [a, b])
    swapped = builder.chat([{"role": "user", "content": "Other?"}], [b, a])
    chunks = lambda layout: sorted(s.token_ids for s in layout.segments if s.kind == "chunk")  # noqa: E731
    assert chunks(first) == chunks(swapped) == chunks(builder.completion("Q", [a, b]))
    assert first.routing_hint.chunk_keys == a.chunk_keys + b.chunk_keys
    assert list(a.chunk_keys) == [chunk_key(FP, ids) for ids in a.chunk_token_ids]
    assert first.routing_hint.chunk_tokens == tuple(a.chunk_token_counts + b.chunk_token_counts)
    assert first.routing_hint.total_tokens == len(prompt_token_ids(first.segments))
    assert first.routing_hint.prefix_tokens == len(first.segments[0])
    # The prefix is keyed for the router's prefix affinity; the same head gives the same key.
    assert first.routing_hint.prefix_key == chunk_key(FP, first.segments[0].token_ids)
    assert builder.chat(QUESTION, [b]).routing_hint.prefix_key == first.routing_hint.prefix_key


def test_chat_without_documents(builder, tokenizer):
    layout = builder.chat(QUESTION, [])
    expected = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=True)["input_ids"]
    assert prompt_token_ids(layout.segments) == expected
    assert [s.kind for s in layout.segments] == ["prefix", "text"]


def test_completion_layouts(builder, tokenizer):
    plain = builder.completion("The river", [])
    assert prompt_token_ids(plain.segments) == tokenizer.encode("The river")  # what the engine does with text
    assert plain.segments[0].kind == "prefix" and plain.segments[0].token_ids == (tokenizer.bos_token_id,)
    doc = builder.chunk_document("A copper lantern.")
    with_doc = builder.completion("The river", [doc])
    assert [s.kind for s in with_doc.segments] == ["prefix", "chunk", "text"]
    ids = builder.completion([5, 6, 7], [doc])
    assert [s.kind for s in ids.segments] == ["chunk", "text"] and ids.segments[-1].token_ids == (5, 6, 7)


def test_template_that_ignores_documents_gets_them_before_the_last_question(tokenizer):
    template = ("{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>"
                "{% endfor %}<assistant>")
    b = PromptBuilder(with_template(template), FP, 64)
    assert b.template_wrapper is None
    doc = b.chunk_document("The ferry leaves at nine.\n")
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "When?"}]
    layout = b.chat(messages, [doc])
    decode = b.tokenizer.decode
    system = f"<system>{DEFAULT_DOCUMENTS_SYSTEM_PROMPT}</system>"
    assert decode(layout.segments[0].token_ids) == f"<s>{system}<user>Hi</user><assistant>Hello</assistant><user>"
    assert decode(layout.segments[1].token_ids) == "The ferry leaves at nine.\n\n\n"
    assert decode(layout.segments[2].token_ids) == "When?</user><assistant>"
    # The messages' own system turn is kept, and no system line is added without documents.
    own = b.chat([{"role": "system", "content": "Be brief."}, *messages], [doc])
    assert decode(own.segments[0].token_ids).startswith("<s><system>Be brief.</system><user>Hi</user>")
    plain = b.chat(messages, [])
    assert decode(prompt_token_ids(plain.segments)) == ("<s><user>Hi</user><assistant>Hello</assistant>"
                                                        "<user>When?</user><assistant>")
    with pytest.raises(ValueError, match="need a user message"):
        b.chat([{"role": "system", "content": "x"}], [doc])


def test_numbered_documents_are_not_position_independent(tokenizer):
    template = ("{{ bos_token }}{% for d in documents or [] %}Doc {{ loop.index }}: {{ d['text'] }}\n{% endfor %}"
                "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    assert PromptBuilder(with_template(template), FP, 64).template_wrapper is None


def test_chat_errors(tokenizer):
    with pytest.raises(ValueError, match="rejected the messages: roles must be"):
        PromptBuilder(tokenizer, FP, 64).chat([{"role": "tool", "content": "x"}], [])
    no_template = build_tokenizer()
    no_template.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        PromptBuilder(no_template, FP, 64).chat(QUESTION, [])
    with pytest.raises(ValueError, match="non-blank"):
        PromptBuilder(tokenizer, FP, 64).chunk_document(" \n ")


def test_chat_template_kwargs_reach_the_template(tokenizer):
    from tests.support.tiny_chat_model import CHAT_TEMPLATE

    template = CHAT_TEMPLATE.replace("You answer from the documents.", "{{ greeting or 'You answer from the documents.' }}")
    b = PromptBuilder(with_template(template), FP, 64)
    docs = [b.chunk_document(document(3))]
    messages = [{"role": "user", "content": "Which harbor?"}]
    plain = b.chat(messages, docs)
    greeted = b.chat(messages, docs, {"greeting": "Hello there."})
    assert "Hello there." in greeted.text and "Hello there." not in plain.text
    assert greeted.segments[1:] == plain.segments[1:]  # only the head changed: same chunks, same tail
