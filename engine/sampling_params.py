"""Per-request sampling parameters (vLLM's meanings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

StructuredKind = Literal["json_schema", "json_object", "regex", "choice", "grammar"]


@dataclass(frozen=True)
class StructuredOutput:
    """A constraint on the output text, enforced token by token with a grammar bitmask.

    Attributes:
        kind: ``json_schema`` (``spec`` is the schema as JSON text), ``json_object`` (any JSON
            object; ``spec`` unused), ``regex``, ``choice`` (``choices``), ``grammar`` (EBNF).
        spec: the schema, regex or grammar text.
        choices: the allowed outputs of ``choice``.
    """

    kind: StructuredKind
    spec: str = ""
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("json_schema", "json_object", "regex", "choice", "grammar"):
            raise ValueError(f"unknown structured output kind {self.kind!r}")
        if self.kind == "choice" and not self.choices:
            raise ValueError("a choice constraint needs at least one choice")


@dataclass(frozen=True)
class SamplingParams:
    """How one request's tokens are chosen and when it stops.

    Attributes:
        max_tokens: most tokens to generate (>= 1).
        temperature: 0 is greedy; otherwise logits are divided by it before sampling.
        top_k: keep the k most likely tokens; 0 (or -1, normalised to 0) keeps all.
        top_p: nucleus sampling mass in (0, 1].
        min_p: drop tokens less likely than ``min_p`` times the most likely one (0 disables).
        seed: per-request seed; the same seed and prompt give the same tokens.
        stop: stop strings; the output text ends before the first one (see
            ``include_stop_str_in_output``).
        stop_token_ids: extra token ids that end the request (kept out of the text).
        ignore_eos: keep generating past the model's EOS.
        min_tokens: EOS and ``stop_token_ids`` cannot be sampled before this many tokens.
        presence_penalty: subtracted from the logit of every token already generated.
        frequency_penalty: subtracted once per occurrence of a token already generated.
        repetition_penalty: divides positive (multiplies negative) logits of tokens in the
            prompt or the output; 1 disables it.
        logit_bias: ``(token_id, bias)`` pairs added to the logits before sampling.
        logprobs: return the log-probability of each chosen token.
        top_logprobs: also return the N most likely tokens' log-probabilities at each step
            (under the unprocessed distribution; 0 returns none).
        prompt_logprobs: None for none; otherwise each prompt token's logprob (after the first)
            and the N most likely tokens at its position (vLLM's meaning; every prompt position
            is then computed, see :mod:`engine.prompt_logprobs`).
        n: sequences generated from the prompt (its KV is computed once and shared).
        skip_special_tokens: leave special tokens out of the text.
        include_stop_str_in_output: keep the stop string that ended the request in the text.
        structured: constrain the output to a grammar (JSON schema, regex, choice, EBNF).
    """

    max_tokens: int = 16
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)
    stop_token_ids: tuple[int, ...] = field(default_factory=tuple)
    ignore_eos: bool = False
    min_tokens: int = 0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = field(default_factory=tuple)
    logprobs: bool = False
    top_logprobs: int = 0
    prompt_logprobs: int | None = None
    n: int = 1
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    structured: StructuredOutput | None = None

    def __post_init__(self) -> None:
        for name in ("max_tokens", "n"):
            if not _is_int(getattr(self, name)) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not self.temperature >= 0.0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if not _is_int(self.top_k) or self.top_k < -1:
            raise ValueError(f"top_k must be an integer >= -1 (0 or -1 disables it), got {self.top_k!r}")
        if self.top_k == -1:
            object.__setattr__(self, "top_k", 0)
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p!r}")
        for name in ("presence_penalty", "frequency_penalty"):
            if not -2.0 <= getattr(self, name) <= 2.0:
                raise ValueError(f"{name} must be in [-2, 2], got {getattr(self, name)!r}")
        if not self.repetition_penalty > 0.0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty!r}")
        for name in ("top_logprobs", "min_tokens"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {getattr(self, name)!r}")
        if self.prompt_logprobs is not None and (not _is_int(self.prompt_logprobs) or self.prompt_logprobs < 0):
            raise ValueError(f"prompt_logprobs must be None or an integer >= 0, got {self.prompt_logprobs!r}")
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) must be at most max_tokens ({self.max_tokens})")
        if self.min_tokens and self.structured is not None:
            raise ValueError("min_tokens cannot be combined with structured output (the grammar may need to end sooner)")
        if self.seed is not None and not _is_int(self.seed):
            raise ValueError(f"seed must be an integer or None, got {self.seed!r}")
        stop = (self.stop,) if isinstance(self.stop, str) else self.stop
        if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) and s for s in stop):
            raise ValueError(f"stop must be a non-empty string or a list of non-empty strings, got {self.stop!r}")
        object.__setattr__(self, "stop", tuple(stop))
        ids = self.stop_token_ids
        if not isinstance(ids, (list, tuple)) or not all(_is_int(t) and t >= 0 for t in ids):
            raise ValueError(f"stop_token_ids must be a list of token ids >= 0, got {ids!r}")
        object.__setattr__(self, "stop_token_ids", tuple(ids))
        bias = tuple((int(t), float(b)) for t, b in self.logit_bias)
        if any(t < 0 or not -100.0 <= b <= 100.0 for t, b in bias):
            raise ValueError("logit_bias maps token ids >= 0 to biases in [-100, 100]")
        object.__setattr__(self, "logit_bias", bias)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def has_penalties(self) -> bool:
        return self.presence_penalty != 0.0 or self.frequency_penalty != 0.0 or self.repetition_penalty != 1.0


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
