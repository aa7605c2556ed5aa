"""A seeded multi-document QA workload for accuracy benchmarks of link policies.

Entities, facts, questions and answers come from :class:`training.data.Generator` on the
held-out name split; this module makes each of its short fact documents a realistic
retrieval passage of a requested length in tokens, its fact sentences spread among filler::

    document  [filler][fact][filler][filler][fact][filler] ... ~= doc_tokens tokens
    example   documents in a per-example random order, one question, the gold answer,
              the indices of the documents needed (1 single-hop, 2 two-hop)

Everything is drawn from the seed: the same spec and token counter give byte-identical
examples. Lengths are measured by the caller's token counter (the benchmarked model's
tokenizer), so a document is within half a filler sentence of ``doc_tokens`` for that model.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from evals.filler import filler_sentence
from training.data import Generator

MIN_DOC_TOKENS, MAX_DOC_TOKENS = 100, 500
MIN_DOCS, MAX_DOCS = 2, 10
HOP_KINDS = ("single", "two_hop")

TokenCounter = Callable[[str], int]
# Sentences in the generator's documents end with a period; no name or value contains one.
_SENTENCE_END = re.compile(r"(?<=\.) ")
_TRIES = 8


@dataclass(frozen=True)
class WorkloadSpec:
    """What to generate.

    Attributes:
        seed: the only source of randomness.
        num_examples: examples to draw.
        min_docs, max_docs: documents per example, drawn uniformly in this range (2-10).
        doc_tokens: target length of every document in tokens (100-500).
        two_hop_fraction: share of two-hop questions (in [0, 1]).
    """

    seed: int
    num_examples: int
    min_docs: int = 4
    max_docs: int = 8
    doc_tokens: int = 250
    two_hop_fraction: float = 0.3

    def __post_init__(self) -> None:
        if self.num_examples < 1:
            raise ValueError(f"num_examples must be >= 1, got {self.num_examples}")
        if not MIN_DOCS <= self.min_docs <= self.max_docs <= MAX_DOCS:
            raise ValueError(f"documents per example must satisfy {MIN_DOCS} <= min <= max <= {MAX_DOCS}, "
                             f"got {self.min_docs}-{self.max_docs}")
        if not MIN_DOC_TOKENS <= self.doc_tokens <= MAX_DOC_TOKENS:
            raise ValueError(f"doc_tokens must be in [{MIN_DOC_TOKENS}, {MAX_DOC_TOKENS}], got {self.doc_tokens}")
        if not 0.0 <= self.two_hop_fraction <= 1.0:
            raise ValueError(f"two_hop_fraction must be in [0, 1], got {self.two_hop_fraction}")


@dataclass(frozen=True)
class RagExample:
    """One request of the workload.

    Attributes:
        documents: document texts in prompt order.
        question: the user's question.
        answer: the gold answer, copied verbatim from a document.
        kind: ``single`` or ``two_hop``.
        answer_documents: indices into ``documents`` of the documents the answer needs.
        entity: the entity the question names.
    """

    documents: tuple[str, ...]
    question: str
    answer: str
    kind: str
    answer_documents: tuple[int, ...]
    entity: str


def generate(spec: WorkloadSpec, count_tokens: TokenCounter) -> list[RagExample]:
    """The workload's examples, fully determined by ``spec`` and ``count_tokens``."""
    facts = Generator(spec.seed, "heldout", spec.two_hop_fraction, num_docs=(spec.min_docs, spec.max_docs))
    # A second stream for the filler, so padding never shifts the facts drawn above.
    rng = random.Random(f"rag-workload-filler-{spec.seed}")
    examples = []
    for _ in range(spec.num_examples):
        ex = facts.example()
        documents = tuple(pad_document(_SENTENCE_END.split(d), spec.doc_tokens, count_tokens, rng)
                          for d in ex.documents)
        examples.append(RagExample(documents, ex.question, ex.answer, ex.kind, tuple(ex.answer_documents),
                                   ex.entity))
    return examples


def pad_document(sentences: list[str], num_tokens: int, count_tokens: TokenCounter,
                 rng: random.Random) -> str:
    """``sentences`` in their order with distinct filler sentences inserted at random places:
    while the text is short of ``num_tokens`` tokens, a sentence that keeps it within the
    length, else (after ``_TRIES`` draws) the draw that overshoots least, if that is closer."""
    current = list(sentences)
    length = count_tokens(" ".join(current))
    while length < num_tokens:
        overshoots: list[tuple[int, list[str]]] = []
        while len(overshoots) < _TRIES:
            sentence = filler_sentence(rng)
            if sentence in current:
                continue
            candidate = list(current)
            candidate.insert(rng.randint(0, len(candidate)), sentence)
            new_length = count_tokens(" ".join(candidate))
            if new_length <= num_tokens:
                current, length = candidate, new_length
                break
            overshoots.append((new_length, candidate))
        else:
            new_length, candidate = min(overshoots, key=lambda c: c[0])
            return " ".join(candidate if new_length - num_tokens < num_tokens - length else current)
    return " ".join(current)
