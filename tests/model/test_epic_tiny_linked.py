"""epic-tiny-linked, epic-tiny fine-tuned with chunk-local attention: linked chunks answer
held-out questions as well as full prefill does (the base model loses most of them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from engine import LinkPolicy
from training.data import Generator
from training.evaluate import engine_accuracy

ROOT = Path(__file__).resolve().parents[2]
POLICIES = [LinkPolicy("full"), LinkPolicy("naive")]


@pytest.fixture(scope="module")
def examples():
    return Generator(11, "heldout").examples(100)  # entities training never saw


def test_linked_chunks_answer_like_full_prefill(examples):
    model_dir = ROOT / "models" / "epic-tiny-linked"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    acc = {label: r["accuracy"]["all"] for label, r in engine_accuracy(model_dir, tokenizer, examples,
                                                                       POLICIES).items()}
    assert acc["full"] >= 0.88 and acc["naive"] >= 0.85, acc
    assert acc["naive"] >= acc["full"] - 0.05, acc


def test_the_base_model_loses_most_answers_when_linked(examples):
    model_dir = ROOT / "models" / "epic-tiny"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    acc = {label: r["accuracy"]["all"] for label, r in engine_accuracy(model_dir, tokenizer, examples,
                                                                       POLICIES).items()}
    assert acc["full"] >= 0.88 and acc["naive"] <= 0.3, acc
