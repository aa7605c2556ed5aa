"""Seeded synthetic multi-document QA: made-up entities, fact documents, distractors, questions.

Every example is a handful of short documents (2-6 sentences each) and one question whose
answer is stated in exactly one document (``single``) or needs two (``two_hop``: a relation
in one document leads to the entity whose attribute another document states). Answers are
always copied verbatim from a document, so the task is retrieval by entity name plus
attribute, which a small model can learn with induction-style heads.

Entity names are built from syllables and split into two disjoint pools by a stable hash
(``train`` / ``heldout``), so held-out questions are about entities training never saw.

    python -m training.data --seed 1 --n 500 --out heldout.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

SPLITS = ("train", "heldout")
KINDS = ("person", "city", "company")

_ONSETS = ("b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "r",
           "s", "sk", "t", "th", "tr", "v", "z", "zh", "w")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ei", "ou")
_CODAS = ("", "", "", "n", "r", "s", "l", "k", "th", "m")

_JOBS = ("baker", "pilot", "farmer", "doctor", "teacher", "painter", "sailor", "miner", "judge",
         "tailor", "writer", "chemist", "builder", "singer", "gardener", "weaver", "potter",
         "lawyer", "nurse", "engineer")
_PRODUCTS = ("bicycles", "lamps", "glass", "rope", "paper", "clocks", "boats", "shoes", "maps",
             "tea", "soap", "radios", "bells", "tiles", "cheese", "ink", "saddles", "kites")
_COLORS = ("red", "blue", "green", "yellow", "purple", "orange", "white", "black", "grey",
           "brown", "silver", "golden")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")

_GENERIC = (
    "The weather in spring is often mild and wet.",
    "Many people enjoy a walk in the park after lunch.",
    "Old maps are kept in the archive of the library.",
    "A good meal is shared with friends and family.",
    "The train leaves the station early in the morning.",
    "Children learn to read and write at school.",
    "Rain fell all night and the roads were quiet.",
    "The market is busy on the first day of the week.",
    "Music was played in the square during the festival.",
    "The bridge was painted again last summer.",
    "Most shops close early on holidays.",
    "The museum has a large hall of old paintings.",
    "Fresh bread is sold at dawn in the small bakery.",
    "The river is cold even in the middle of summer.",
    "Travellers often stop at the inn by the road.",
    "Letters used to take weeks to arrive.",
    "The hills are green after the autumn rain.",
    "Birds gather on the roofs before the winter.",
)


def _syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)


def _word(rng: random.Random, split: str) -> str:
    """A made-up capitalised word of 2-3 syllables from ``split``'s half of the name space."""
    want = SPLITS.index(split)
    while True:
        word = "".join(_syllable(rng) for _ in range(rng.choice((2, 2, 3)))).capitalize()
        # One word in eight is held out; the hash is stable across processes and seeds.
        if (zlib.crc32(word.encode()) % 8 == 0) == (want == 1) and 4 <= len(word) <= 10:
            return word


@dataclass
class Entity:
    """A made-up entity and its facts (attribute name -> value as it appears in text)."""

    kind: str
    name: str
    facts: dict[str, str] = field(default_factory=dict)


# attribute -> (kind, fact sentence, question); {e} the entity, {v} the value.
ATTRIBUTES: dict[str, tuple[str, str, str]] = {
    "born": ("person", "{e} was born in {v}.", "In which year was {e} born?"),
    "job": ("person", "{e} works as a {v}.", "What is the job of {e}?"),
    "age": ("person", "{e} is {v} years old.", "How old is {e}?"),
    "lives": ("person", "{e} lives in {v}.", "In which city does {e} live?"),
    "employer": ("person", "{e} works for {v}.", "Which company does {e} work for?"),
    "color": ("person", "The favourite color of {e} is {v}.", "What is the favourite color of {e}?"),
    "population": ("city", "The population of {e} is {v}.", "What is the population of {e}?"),
    "country": ("city", "{e} is a city in {v}.", "In which country is {e}?"),
    "founded": ("city", "{e} was founded in {v}.", "When was {e} founded?"),
    "river": ("city", "The river {v} flows through {e}.", "Which river flows through {e}?"),
    "mayor": ("city", "The mayor of {e} is {v}.", "Who is the mayor of {e}?"),
    "product": ("company", "{e} makes {v}.", "What does {e} make?"),
    "employees": ("company", "{e} has {v} employees.", "How many employees does {e} have?"),
    "headquarters": ("company", "The headquarters of {e} are in {v}.", "Where are the headquarters of {e}?"),
    "established": ("company", "{e} was established on {v}.", "On which date was {e} established?"),
    "founder": ("company", "{e} was founded by {v}.", "Who founded {e}?"),
}

# Relation attributes whose value is another entity's name: (attribute, kind of the value).
RELATIONS: dict[str, str] = {"lives": "city", "employer": "company", "mayor": "person",
                             "headquarters": "city", "founder": "person"}

# two-hop question: (relation, attribute of the related entity) -> question template.
TWO_HOP: dict[tuple[str, str], str] = {
    ("lives", "population"): "What is the population of the city where {e} lives?",
    ("lives", "country"): "In which country is the city where {e} lives?",
    ("employer", "product"): "What does the company that {e} works for make?",
    ("employer", "employees"): "How many employees does the company that {e} works for have?",
    ("headquarters", "population"): "What is the population of the city where {e} has its headquarters?",
    ("founder", "born"): "In which year was the founder of {e} born?",
    ("mayor", "job"): "What is the job of the mayor of {e}?",
}


@dataclass(frozen=True)
class Example:
    """One QA example: documents in prompt order, the question, its answer and provenance
    (question kind, indices of the documents needed, the entity the question names).

    Documents and question are plain text; :mod:`training.prompt` turns them into the
    model's prompt format.
    """

    documents: list[str]
    question: str
    answer: str
    kind: str
    answer_documents: list[int]
    entity: str


class Generator:
    """Seeded source of entities, documents and QA examples from one name split."""

    def __init__(self, seed: int, split: str = "train", two_hop_fraction: float = 0.1,
                 num_docs: tuple[int, int] = (3, 6)) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        if not 0.0 <= two_hop_fraction <= 1.0:
            raise ValueError(f"two_hop_fraction must be in [0, 1], got {two_hop_fraction}")
        if not 2 <= num_docs[0] <= num_docs[1]:
            raise ValueError(f"num_docs must be (low, high) with 2 <= low <= high, got {num_docs}")
        self.rng = random.Random(seed)
        self.split = split
        self.two_hop_fraction = two_hop_fraction
        self.num_docs = num_docs

    # -- values -------------------------------------------------------------------------
    def _name(self, kind: str) -> str:
        rng, w = self.rng, lambda: _word(self.rng, self.split)
        if kind == "person":
            return f"{w()} {w()}"
        if kind == "city":
            return w()
        return f"{w()} {rng.choice(('Works', 'Company', 'Group', 'Labs', 'Trading'))}"

    def _value(self, attribute: str) -> str:
        rng = self.rng
        if attribute in RELATIONS:
            return self._name(RELATIONS[attribute])
        if attribute in ("born", "founded"):
            return str(rng.randint(1600, 2020))
        if attribute == "age":
            return str(rng.randint(18, 99))
        if attribute == "population":
            return str(rng.randint(1000, 990000))
        if attribute == "employees":
            return str(rng.randint(3, 9000))
        if attribute == "established":
            return f"{rng.randint(1, 28)} {rng.choice(_MONTHS)} {rng.randint(1850, 2020)}"
        if attribute == "job":
            return rng.choice(_JOBS)
        if attribute == "color":
            return rng.choice(_COLORS)
        if attribute == "product":
            return rng.choice(_PRODUCTS)
        if attribute == "country":
            return f"{_word(rng, self.split)}ia"
        if attribute == "river":
            return _word(rng, self.split)
        raise AssertionError(f"no value rule for {attribute}")

    def entity(self, kind: str, must: tuple[str, ...] = (), name: str | None = None) -> Entity:
        """An entity with 2-5 facts, always including the attributes in ``must``."""
        attrs = [a for a, (k, _, _) in ATTRIBUTES.items() if k == kind]
        chosen = list(must)
        extra = [a for a in attrs if a not in chosen]
        self.rng.shuffle(extra)
        chosen += extra[: max(0, self.rng.randint(2, 5) - len(chosen))]
        facts = {a: self._value(a) for a in chosen}
        return Entity(kind, name or self._name(kind), facts)

    # -- documents ----------------------------------------------------------------------
    def document(self, entity: Entity) -> str:
        """The entity's facts in shuffled order, sometimes with a generic sentence mixed in."""
        sentences = [ATTRIBUTES[a][1].format(e=entity.name, v=v) for a, v in entity.facts.items()]
        self.rng.shuffle(sentences)
        if len(sentences) < 6 and self.rng.random() < 0.3:
            sentences.insert(self.rng.randint(0, len(sentences)), self.rng.choice(_GENERIC))
        return " ".join(sentences)

    def generic_document(self) -> str:
        return " ".join(self.rng.sample(_GENERIC, self.rng.randint(2, 5)))

    # -- examples -----------------------------------------------------------------------
    def example(self) -> Example:
        """``num_docs`` documents (3-6 by default), exactly one (or two for two-hop) of which
        answer the question."""
        return self._sample()[0]

    def example_with_extras(self, num_extra: int) -> tuple[Example, list[tuple[str, str]]]:
        """An example plus up to ``num_extra`` more single-hop (question, answer) pairs about
        other facts in the same documents (more supervision per prompt in training)."""
        ex, entities = self._sample()
        facts = [(e, a) for e in entities for a in e.facts
                 if not (e.name == ex.entity and ATTRIBUTES[a][2].format(e=e.name) == ex.question)]
        picked = self.rng.sample(facts, min(num_extra, len(facts)))
        return ex, [(ATTRIBUTES[a][2].format(e=e.name), e.facts[a]) for e, a in picked]

    def _sample(self) -> tuple[Example, list[Entity]]:
        rng = self.rng
        if rng.random() < self.two_hop_fraction:
            (relation, attribute), template = rng.choice(sorted(TWO_HOP.items()))
            head_kind = ATTRIBUTES[relation][0]
            head = self.entity(head_kind, must=(relation,))
            tail = self.entity(RELATIONS[relation], must=(attribute,), name=head.facts[relation])
            gold = [head, tail]
            question, answer, kind = template.format(e=head.name), tail.facts[attribute], "two_hop"
            # Distractors hold the same relation/attribute for other entities.
            pool = [(head_kind, relation), (RELATIONS[relation], attribute)]
        else:
            attribute = rng.choice(sorted(ATTRIBUTES))
            head_kind = ATTRIBUTES[attribute][0]
            target = self.entity(head_kind, must=(attribute,))
            gold = [target]
            question = ATTRIBUTES[attribute][2].format(e=target.name)
            answer, kind = target.facts[attribute], "single"
            pool = [(head_kind, attribute)]
        num_docs = rng.randint(*self.num_docs)
        gold_names = {e.name for e in gold}
        docs: list[tuple[str, bool]] = [(self.document(e), True) for e in gold]
        entities = list(gold)
        while len(docs) < num_docs:
            if rng.random() < 0.15:
                docs.append((self.generic_document(), False))
                continue
            kind_d, attr_d = rng.choice(pool)
            other = self.entity(kind_d, must=(attr_d,) if rng.random() < 0.7 else ())
            if other.name in gold_names or any(v in gold_names for v in other.facts.values()):
                continue  # keep every gold fact stated in exactly one document
            docs.append((self.document(other), False))
            entities.append(other)
        rng.shuffle(docs)
        example = Example(
            documents=[d for d, _ in docs],
            question=question,
            answer=answer,
            kind=kind,
            answer_documents=[i for i, (_, g) in enumerate(docs) if g],
            entity=gold[0].name,
        )
        return example, entities

    def examples(self, n: int) -> list[Example]:
        return [self.example() for _ in range(n)]


def write_jsonl(examples: list[Example], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for ex in examples:
            f.write(json.dumps(asdict(ex)) + "\n")


def read_jsonl(path: Path) -> list[Example]:
    with Path(path).open() as f:
        return [Example(**json.loads(line)) for line in f if line.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--n", type=int, required=True, help="number of questions")
    parser.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    parser.add_argument("--split", choices=SPLITS, default="heldout",
                        help="entity-name pool (held-out names never occur in training)")
    parser.add_argument("--two-hop-fraction", type=float, default=0.1)
    args = parser.parse_args(argv)
    if args.n <= 0:
        parser.error("--n must be >= 1")
    gen = Generator(args.seed, args.split, args.two_hop_fraction)
    write_jsonl(gen.examples(args.n), args.out)


if __name__ == "__main__":
    main()
