"""Turn an API request into engine segments: chat template, tokenization, KVSplit, chunk keys.

Completions (a text prompt; token-id prompts are used verbatim, with nothing added):

    [ prefix: BOS ][ chunk ]...[ chunk ][ text: the prompt ]
                   one per KVSplit chunk of each document, documents in request order

Chat: the template is rendered with placeholder documents and cut around them:

    [ prefix: template head ][ chunk ]...[ chunk ][ text: template tail (last user turn,
      (system turn, history)                        generation prompt) ]

A model whose chat template renders ``documents`` (as Hugging Face RAG templates do) wraps
each document in the same text wherever it stands (``Document: {text}\\n`` for the test
model epic-tiny).
That wrapper is learned once from the template and becomes part of the document's chunks, in
both endpoints and the documents API, so a document's chunk keys never depend on where or
through which endpoint it is used. A template that ignores documents (most instruct models' ChatML
or Llama templates) gets them at the start of the last user message, each followed by a blank
line, behind a system line telling the model to answer from them (unless the messages bring
their own system turn)::

    [ prefix: <|im_start|>system\n{documents system prompt}<|im_end|>\n<|im_start|>user\n ]
    [ chunk: doc 1 "\n\n" ]...[ chunk: doc n "\n\n" ][ text: question<|im_end|>\n
                                                           <|im_start|>assistant\n ]

Pure logic on a ``transformers`` tokenizer: no Ray, no FastAPI.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from deployments.document_order import document_order
from engine.kvsplit import kvsplit
from engine.segments import Segment
from kvstore.keys import ChunkKey, chunk_key
from router.hint import RoutingHint

_PROBE = [{"role": "user", "content": "?"}]
# For templates that do not render documents themselves.
PLAIN_DOCUMENT_WRAPPER_AFTER = "\n\n"
DEFAULT_DOCUMENTS_SYSTEM_PROMPT = "Answer the question using the documents in the user's message."


@dataclass(frozen=True, slots=True)
class DocumentWrapper:
    """Text the chat template puts around every document."""

    before: str = ""
    after: str = ""

    def apply(self, text: str) -> str:
        return f"{self.before}{text}{self.after}"


@dataclass(frozen=True, slots=True)
class ChunkedDocument:
    """A document as chunks: token ids and chunk keys, in document order."""

    chunk_token_ids: tuple[tuple[int, ...], ...]
    chunk_keys: tuple[ChunkKey, ...]
    text: str  # what the model reads (wrapper included); empty when built from stored ids

    @property
    def chunk_token_counts(self) -> list[int]:
        return [len(ids) for ids in self.chunk_token_ids]

    @property
    def num_tokens(self) -> int:
        return sum(self.chunk_token_counts)


@dataclass(frozen=True, slots=True)
class PromptLayout:
    """A request's prompt, as the engine and the router need it."""

    segments: tuple[Segment, ...]
    routing_hint: RoutingHint
    text: str  # the whole prompt as text (for text-prefix routers)


def learn_document_wrapper(render: Callable[[list[dict], list[dict] | None], str]) -> DocumentWrapper | None:
    """The text a chat template puts around each document, or None if it does not render them
    the same way at every position.

    Renders a probe conversation with zero, one and two placeholder documents::

        r0 = head + tail        r2 = head + before S0 after before S1 after + tail

    and finds the split that explains all three (the longest head that does).
    """
    s0, s1 = _sentinel(0), _sentinel(1)
    r0 = render(_PROBE, None)
    r1 = render(_PROBE, [{"text": s0}])
    r2 = render(_PROBE, [{"text": s0}, {"text": s1}])
    if r1.count(s0) != 1 or r2.count(s0) != 1 or r2.count(s1) != 1:
        return None
    a0, rest = r2.split(s0)
    a1, a2 = rest.split(s1)
    common = 0
    while common < min(len(a0), len(r0)) and a0[common] == r0[common]:
        common += 1
    for h in range(common, -1, -1):
        before = a0[h:]
        if not a1.endswith(before):
            continue
        after = a1[: len(a1) - len(before)]
        if not a2.startswith(after):
            continue
        tail = a2[len(after):]
        if a0[:h] + tail == r0 and r1 == a0 + s0 + after + tail:
            return DocumentWrapper(before, after)
    return None


_NONCE = secrets.token_hex(8)


def _sentinel(i: int) -> str:
    # NUL bytes and a per-process nonce: no client text can forge it by accident.
    return f"\x00epic-{_NONCE}-{i}\x00"


class PromptBuilder:
    """Builds :class:`PromptLayout` s for one model.

    Args:
        tokenizer: the model's ``transformers`` tokenizer.
        model_fingerprint: the engine's model fingerprint (goes into chunk keys).
        chunk_tokens: KVSplit's largest chunk.
        documents_system_prompt: the system turn added to chat requests with documents when the
            template does not render documents and the messages have no system turn.

    ``scope`` (None here; :meth:`scoped` makes a builder for one) is the cache scope every chunk
    and prefix key it computes is under (:func:`kvstore.keys.cache_scope`).
    """

    scope: str | None = None

    def __init__(self, tokenizer, model_fingerprint: str, chunk_tokens: int,
                 documents_system_prompt: str = DEFAULT_DOCUMENTS_SYSTEM_PROMPT):
        self.tokenizer = tokenizer
        self.model_fingerprint = model_fingerprint
        self.chunk_tokens = chunk_tokens
        self.documents_system_prompt = documents_system_prompt
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        self.template_wrapper = learn_document_wrapper(self._render) if self.has_chat_template else None
        self._bos_ids = tuple(tokenizer.encode("", add_special_tokens=True))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    # ---- documents ------------------------------------------------------------------------

    def chunk_document(self, text: str) -> ChunkedDocument:
        """KVSplit a document (wrapped as the chat template wraps documents) and key its chunks.

        Raises:
            ValueError: blank text.
        """
        if not isinstance(text, str) or not text.strip():
            raise ValueError("a document needs non-blank text")
        wrapper = self.template_wrapper or DocumentWrapper(after=PLAIN_DOCUMENT_WRAPPER_AFTER)
        wrapped = wrapper.apply(text)
        chunks = kvsplit(wrapped, self.encode, self.chunk_tokens)
        ids = tuple(c.token_ids for c in chunks)
        return ChunkedDocument(ids, self.keys_of(ids), wrapped)

    def ordered(self, documents: Sequence[ChunkedDocument], order: str, question: str) -> list[ChunkedDocument]:
        """``documents`` in the ``document_order`` asked for (:mod:`deployments.document_order`).
        Registered documents (stored as token ids) are ranked on their decoded text."""
        if order == "as_given" or len(documents) < 2:
            return list(documents)
        texts = [d.text or self.tokenizer.decode([t for ids in d.chunk_token_ids for t in ids]) for d in documents]
        return [documents[i] for i in document_order(order, question, texts)]

    def scoped(self, scope: str | None) -> PromptBuilder:
        """This builder, keying chunks and the prefix under ``scope``."""
        if scope == self.scope:
            return self
        builder = copy.copy(self)
        builder.scope = scope
        return builder

    def keys_of(self, chunk_token_ids: Sequence[Sequence[int]]) -> tuple[ChunkKey, ...]:
        return tuple(chunk_key(self.model_fingerprint, ids, self.scope) for ids in chunk_token_ids)

    # ---- prompts --------------------------------------------------------------------------

    def completion(self, prompt: str | Sequence[int], documents: Sequence[ChunkedDocument]) -> PromptLayout:
        """BOS, the documents' chunks, the prompt (a token-id prompt gets no BOS)."""
        if isinstance(prompt, str):
            return self._layout(list(self._bos_ids), documents, self.encode(prompt), prompt, "")
        return self._layout([], documents, list(prompt), "", "")

    def chat(self, messages: list[dict], documents: Sequence[ChunkedDocument],
             template_kwargs: Mapping[str, object] | None = None, add_generation_prompt: bool = True,
             continue_final_message: bool = False) -> PromptLayout:
        """The chat template's head, the documents' chunks, the template's tail
        (``template_kwargs``: extra variables for the template, vLLM's ``chat_template_kwargs``;
        ``add_generation_prompt``: end with the header of a new assistant reply;
        ``continue_final_message``: end inside the final message, so the reply continues it).

        Raises:
            ValueError: no chat template, a template error (e.g. a bad role), or documents
                without a user message to attach them to.
        """
        if not self.has_chat_template:
            raise ValueError("this model has no chat template: use /v1/completions")
        template_kwargs = {**(template_kwargs or {}), "add_generation_prompt": add_generation_prompt,
                           "continue_final_message": continue_final_message}
        if self.template_wrapper is not None:
            head, tail = self._split_at_documents(messages, len(documents), template_kwargs)
        else:
            if documents and self.documents_system_prompt and not any(
                    isinstance(m, dict) and m.get("role") == "system" for m in messages):
                messages = [{"role": "system", "content": self.documents_system_prompt}, *messages]
            head, tail = self._split_at_last_user(messages, bool(documents), template_kwargs)
        return self._layout(self.encode(head), documents, self.encode(tail), tail, head)

    def _split_at_documents(self, messages: list[dict], num_documents: int,
                            template_kwargs: Mapping[str, object] | None) -> tuple[str, str]:
        sentinels = [_sentinel(i) for i in range(max(num_documents, 1))]
        rendered = self._render(messages, [{"text": s} for s in sentinels], template_kwargs)
        parts = _split_on(rendered, sentinels)
        w = self.template_wrapper
        glue = w.after + w.before
        if not (parts[0].endswith(w.before) and parts[-1].startswith(w.after)
                and all(p == glue for p in parts[1:-1])):
            raise ValueError("the chat template did not place the documents as it does for the probe")
        head, tail = parts[0][: len(parts[0]) - len(w.before)], parts[-1][len(w.after):]
        if num_documents == 0:
            plain = self._render(messages, None, template_kwargs)
            return (head, plain[len(head):]) if plain.startswith(head) else ("", plain)
        return head, tail

    def _split_at_last_user(self, messages: list[dict], has_documents: bool,
                            template_kwargs: Mapping[str, object] | None) -> tuple[str, str]:
        users = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"]
        if not users:
            if has_documents:
                raise ValueError("documents need a user message to precede; the messages have none")
            return "", self._render(messages, None, template_kwargs)
        last = users[-1]
        content = messages[last].get("content", "")
        marker = _sentinel(0)
        probe = [*messages[:last], {**messages[last], "content": marker}, *messages[last + 1:]]
        head, rest = _split_on(self._render(probe, None, template_kwargs), [marker])
        return head, content + rest

    def _layout(self, prefix_ids: list[int], documents: Sequence[ChunkedDocument], text_ids: list[int],
                text: str, head: str) -> PromptLayout:
        segments = [Segment.prefix(prefix_ids)] if prefix_ids else []
        keys, counts = [], []
        for doc in documents:
            for ids, key in zip(doc.chunk_token_ids, doc.chunk_keys):
                segments.append(Segment.chunk(ids))
                keys.append(key)
                counts.append(len(ids))
        if text_ids:
            segments.append(Segment.text(text_ids))
        total = len(prefix_ids) + sum(counts) + len(text_ids)
        # The prefix is keyed like a chunk: the router's prefix affinity (the engine's prefix cache).
        prefix_key = chunk_key(self.model_fingerprint, prefix_ids, self.scope) if prefix_ids else None
        hint = RoutingHint(chunk_keys=tuple(keys), chunk_tokens=tuple(counts), prefix_tokens=len(prefix_ids),
                           prefix_key=prefix_key, total_tokens=total)
        return PromptLayout(tuple(segments), hint, head + "".join(d.text for d in documents) + text)

    def _render(self, messages: list[dict], documents: list[dict] | None,
                template_kwargs: Mapping[str, object] | None = None) -> str:
        from jinja2 import TemplateError

        try:
            kwargs = {"add_generation_prompt": True, **(template_kwargs or {})}
            return self.tokenizer.apply_chat_template(messages, documents=documents, tokenize=False, **kwargs)
        except TemplateError as e:
            raise ValueError(f"the chat template rejected the messages: {e}") from e


def _split_on(text: str, sentinels: list[str]) -> list[str]:
    """``text`` cut at each sentinel in order; each must occur exactly once."""
    parts = []
    for s in sentinels:
        if text.count(s) != 1:
            raise ValueError("the messages contain reserved placeholder text or the template dropped it")
        before, text = text.split(s)
        parts.append(before)
    parts.append(text)
    return parts
