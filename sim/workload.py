"""The permuted-document workload: a document pool and a trace of requests over it.

Each request is a shared system prefix, a random subset of documents in random order
(popularity follows Zipf(``zipf_s``); 0 is uniform) and a unique question::

    [ prefix ][ doc 7: chunk, chunk ][ doc 2: chunk ][ doc 41: chunk, chunk, chunk ][ question ]

Prefix caching cannot reuse the documents (their order changes); position-independent caching
can, if the request lands on a replica that holds them.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

from kvstore.keys import chunk_key
from router.hint import RoutingHint

SIM_MODEL_FINGERPRINT = "simulated-model"


@dataclass(frozen=True)
class WorkloadConfig:
    """Shape of the permuted-document workload.

    Attributes:
        num_documents: documents in the pool.
        min_docs_per_request: fewest documents in one request (distinct, random order).
        max_docs_per_request: most documents in one request.
        min_doc_tokens: shortest document.
        max_doc_tokens: longest document.
        chunk_tokens: KVSplit's largest chunk.
        prefix_tokens: shared system prefix per request (0 for none).
        question_tokens: unique tail per request.
        num_requests: requests in the trace.
        zipf_s: document popularity exponent (0 = uniform).
    """

    num_documents: int = 64
    min_docs_per_request: int = 4
    max_docs_per_request: int = 4
    min_doc_tokens: int = 128
    max_doc_tokens: int = 1024
    chunk_tokens: int = 512
    prefix_tokens: int = 64
    question_tokens: int = 32
    num_requests: int = 2000
    zipf_s: float = 0.6

    def __post_init__(self) -> None:
        if not 1 <= self.min_docs_per_request <= self.max_docs_per_request <= self.num_documents:
            raise ValueError("need 1 <= min_docs_per_request <= max_docs_per_request <= num_documents")
        if not 1 <= self.min_doc_tokens <= self.max_doc_tokens:
            raise ValueError("need 1 <= min_doc_tokens <= max_doc_tokens")
        if self.chunk_tokens < 1 or self.num_requests < 1:
            raise ValueError("chunk_tokens and num_requests must be >= 1")


@dataclass(frozen=True)
class Document:
    """A document: its chunks' keys and token counts."""

    doc_id: int
    chunk_keys: tuple[str, ...]
    chunk_tokens: tuple[int, ...]


@dataclass(frozen=True)
class SimRequest:
    """One request of the trace: which documents, in which order, and its routing hint."""

    doc_ids: tuple[int, ...]
    hint: RoutingHint


def make_documents(cfg: WorkloadConfig, rng: random.Random) -> list[Document]:
    """The document pool; chunk keys are real :func:`kvstore.keys.chunk_key` values."""
    docs = []
    for doc_id in range(cfg.num_documents):
        num_tokens = rng.randint(cfg.min_doc_tokens, cfg.max_doc_tokens)
        token_ids = [doc_id * 1_000_003 + i for i in range(num_tokens)]
        pieces = [token_ids[i : i + cfg.chunk_tokens] for i in range(0, num_tokens, cfg.chunk_tokens)]
        docs.append(
            Document(
                doc_id,
                tuple(chunk_key(SIM_MODEL_FINGERPRINT, p) for p in pieces),
                tuple(len(p) for p in pieces),
            )
        )
    return docs


def make_requests(
    cfg: WorkloadConfig, docs: Sequence[Document], rng: random.Random
) -> list[SimRequest]:
    """The request trace: random document subsets in random order behind a shared prefix."""
    cum_weights = list(itertools.accumulate(1.0 / (rank + 1) ** cfg.zipf_s for rank in range(len(docs))))
    prefix_key = chunk_key(SIM_MODEL_FINGERPRINT, [-1] * cfg.prefix_tokens) if cfg.prefix_tokens else None
    requests = []
    for _ in range(cfg.num_requests):
        num_docs = rng.randint(cfg.min_docs_per_request, cfg.max_docs_per_request)
        chosen: dict[int, None] = {}
        while len(chosen) < num_docs:
            chosen[bisect.bisect(cum_weights, rng.random() * cum_weights[-1])] = None
        order = list(chosen)
        rng.shuffle(order)
        keys = tuple(k for d in order for k in docs[d].chunk_keys)
        tokens = tuple(n for d in order for n in docs[d].chunk_tokens)
        hint = RoutingHint(
            chunk_keys=keys,
            chunk_tokens=tokens,
            prefix_tokens=cfg.prefix_tokens,
            prefix_key=prefix_key,
            total_tokens=cfg.prefix_tokens + sum(tokens) + cfg.question_tokens,
        )
        requests.append(SimRequest(tuple(order), hint))
    return requests
