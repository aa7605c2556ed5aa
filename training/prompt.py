"""The epic-tiny prompt format, built piece by piece for position-independent caching.

    [BOS][system line][Document: doc 1\\n][Document: doc 2\\n]...[Question: q\\nAnswer:] answer[EOS]
     \\_____ prefix ____/\\___ chunk ____/ \\___ chunk ____/      \\________ text _______/

Each piece is tokenized on its own and the id lists are joined, so a document's token ids
are the same wherever it appears. Every piece starts at a pre-tokenizer boundary (after a
newline), so the joined ids also equal the tokenization of the joined text (the chat
template renders the same text). Training, evaluation, tests and the serving examples all
build prompts here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.segments import Segment

SYSTEM_LINE = "Answer the question using the documents.\n"


def document_text(body: str) -> str:
    """One document as the model sees it (the text of its chunk)."""
    return f"Document: {body}\n"


def question_text(question: str) -> str:
    """The question segment; the answer follows after a space."""
    return f"Question: {question}\nAnswer:"


def answer_text(answer: str) -> str:
    """The completion the model is trained to produce (EOS added as a token id)."""
    return f" {answer}"


@dataclass(frozen=True)
class PromptIds:
    """Token ids of one prompt's pieces.

    Attributes:
        prefix_ids: BOS followed by the system line.
        chunk_ids: one id list per document, each tokenized alone.
        question_ids: the question segment.
    """

    prefix_ids: list[int]
    chunk_ids: list[list[int]]
    question_ids: list[int]

    def flat(self) -> list[int]:
        """The whole prompt as the model sees it."""
        return self.prefix_ids + [t for ids in self.chunk_ids for t in ids] + self.question_ids

    def segments(self) -> list[Segment]:
        """The prompt as engine segments: prefix, one chunk per document, question text."""
        return ([Segment.prefix(self.prefix_ids)]
                + [Segment.chunk(ids) for ids in self.chunk_ids]
                + [Segment.text(self.question_ids)])

    def chunk_starts(self) -> list[int]:
        """Absolute position of each document's first token in :meth:`flat`."""
        starts, pos = [], len(self.prefix_ids)
        for ids in self.chunk_ids:
            starts.append(pos)
            pos += len(ids)
        return starts


def build_prompt(tokenizer, documents: Sequence[str], question: str) -> PromptIds:
    """Tokenize a QA prompt piece by piece.

    Args:
        tokenizer: the model's Hugging Face tokenizer (needs ``bos_token_id``).
        documents: document bodies in prompt order (may be empty).
        question: the question.
    """
    if tokenizer.bos_token_id is None:
        raise ValueError("the tokenizer has no BOS token; epic-tiny prompts start with BOS")
    texts = [SYSTEM_LINE, *(document_text(d) for d in documents), question_text(question)]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return PromptIds(prefix_ids=[tokenizer.bos_token_id, *ids[0]],
                     chunk_ids=[list(x) for x in ids[1:-1]],
                     question_ids=list(ids[-1]))


def answer_ids(tokenizer, answer: str) -> list[int]:
    """The target completion: the answer's tokens followed by EOS."""
    return [*tokenizer(answer_text(answer), add_special_tokens=False)["input_ids"],
            tokenizer.eos_token_id]
