"""Request bodies of the HTTP API (OpenAI's fields we honour, plus our extensions).

Unknown fields are rejected with a 400 naming them, as OpenAI does; fields we know but cannot
honour (``n`` > 1, ``logprobs``, penalties, ``echo``, ...) are rejected by name too, so a client
never silently gets something other than it asked for. Extensions (OpenAI clients send them with
``extra_body``): ``documents``, ``link_policy``, ``top_k``, ``ignore_eos``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.sampling_params import SamplingParams
from engine.segments import LINK_POLICY_NAMES, LinkPolicy
from deployments.document_order import DOCUMENT_ORDERS
from deployments.errors import APIError, bad_request

MAX_STOP_SEQUENCES = 4


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DocumentRef(_Body):
    """A document given inline (``text``) or registered earlier (``id``); exactly one of them."""

    text: str | None = None
    id: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> DocumentRef:
        if (self.text is None) == (self.id is None):
            raise ValueError('a document is {"text": ...} or {"id": ...}')
        return self


class LinkPolicySpec(_Body):
    name: Literal["full", "prefix", "naive", "legolink", "cacheblend"]
    k: int = Field(default=16, ge=0)
    ratio: float = Field(default=0.15, ge=0.0, le=1.0)
    tail: float = Field(default=0.0, ge=0.0, le=1.0)

    def to_policy(self) -> LinkPolicy:
        return LinkPolicy(self.name, self.k, self.ratio, self.tail)


assert LinkPolicySpec.model_fields["name"].annotation.__args__ == LINK_POLICY_NAMES  # one list of names


class StreamOptions(_Body):
    include_usage: bool = False


class _Generation(_Body):
    """Fields shared by both endpoints."""

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    documents: list[DocumentRef] | None = None
    link_policy: LinkPolicySpec | None = None
    document_order: Literal["as_given", "retrieval", "lexical"] = "as_given"

    @field_validator("n")
    @classmethod
    def _single_choice(cls, n: int) -> int:
        if n != 1:
            raise ValueError("only n=1 is supported")
        return n

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > MAX_STOP_SEQUENCES or any(not s for s in stops):
            raise ValueError(f"stop is at most {MAX_STOP_SEQUENCES} non-empty strings")
        return stop

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, value: float) -> float:
        if value != 0.0:
            raise ValueError("penalties are not supported (only 0)")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _no_bias(cls, value: dict | None) -> dict | None:
        if value:
            raise ValueError("logit_bias is not supported")
        return value

    @property
    def question(self) -> str:
        """The text documents are ranked against for ``document_order``."""
        return ""

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> _Generation:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options needs stream=true")
        return self

    def sampling(self, default_max_tokens: int) -> SamplingParams:
        """The engine's sampling parameters for this request."""
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return SamplingParams(max_tokens=self.max_tokens or default_max_tokens, temperature=self.temperature,
                              top_k=self.top_k, top_p=self.top_p, seed=self.seed, stop=stop,
                              ignore_eos=self.ignore_eos)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class CompletionRequest(_Generation):
    """``POST /v1/completions``: one prompt, a string or token ids."""

    prompt: str | list[int] | list[str] | list[list[int]]
    echo: bool = False
    logprobs: int | None = None
    suffix: str | None = None
    best_of: int | None = None

    @property
    def question(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else ""

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, prompt: Any) -> Any:
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
            if len(prompt) != 1:
                raise ValueError("one prompt per request (batched prompts are not supported)")
            prompt = prompt[0]
        if isinstance(prompt, list) and not prompt:
            raise ValueError("the prompt is empty")
        if isinstance(prompt, list) and any(t < 0 for t in prompt):
            raise ValueError("token ids must be >= 0")
        return prompt

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, echo: bool) -> bool:
        if echo:
            raise ValueError("echo is not supported")
        return echo

    @field_validator("logprobs", "suffix")
    @classmethod
    def _unsupported(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("not supported")
        return value

    @field_validator("best_of")
    @classmethod
    def _best_of_one(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError("only best_of=1 is supported")
        return value


class ContentPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def as_template_message(self) -> dict[str, str]:
        """``{"role", "content"}`` with text parts joined; ``developer`` is OpenAI's new name
        for ``system``."""
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class ChatCompletionRequest(_Generation):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = None

    @property
    def question(self) -> str:
        """The last user message's text."""
        users = [m.as_template_message()["content"] for m in self.messages if m.role == "user"]
        return users[-1] if users else ""

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("logprobs are not supported")
        return value

    @field_validator("top_logprobs")
    @classmethod
    def _no_top_logprobs(cls, value: int | None) -> int | None:
        if value:
            raise ValueError("top_logprobs is not supported")
        return value

    def sampling(self, default_max_tokens: int) -> SamplingParams:
        if self.max_tokens is None and self.max_completion_tokens is not None:
            return self.model_copy(update={"max_tokens": self.max_completion_tokens}).sampling(default_max_tokens)
        return super().sampling(default_max_tokens)


class DocumentIn(_Body):
    id: str = Field(min_length=1)
    text: str


class RegisterDocumentsRequest(_Body):
    """``POST /v1/documents``."""

    documents: list[DocumentIn] = Field(min_length=1)


def parse_body(model: type[_Body], body: bytes) -> Any:
    """Validate a JSON body into ``model``.

    Raises:
        APIError: 400 naming the first problem (bad JSON, an unknown field, a bad value).
    """
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        raise _as_api_error(e) from None


def _as_api_error(e: ValidationError) -> APIError:
    err = e.errors(include_url=False)[0]
    param = _param(err["loc"])
    kind, msg = err["type"], err["msg"].removeprefix("Value error, ")
    if kind == "json_invalid":
        return bad_request(f"the body is not valid JSON: {err.get('ctx', {}).get('error', msg)}", code="invalid_json")
    if kind == "model_type" and not err["loc"]:
        return bad_request("the body must be a JSON object", code="invalid_json")
    if kind == "extra_forbidden":
        return bad_request(f"unsupported parameter {param!r}", param, "unsupported_parameter")
    if kind == "missing":
        return bad_request(f"missing required parameter {param!r}", param, "missing_parameter")
    return bad_request(f"invalid {param!r}: {msg}" if param else msg, param, "invalid_value")


def _param(loc: tuple) -> str | None:
    """``("messages", 0, "content")`` -> ``"messages[0].content"``; the tags pydantic adds for
    union branches (``str``, ``list[int]``, ``function-after[...]``) are dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier() and part not in _UNION_TAGS:
            out += f".{part}" if out else part
    return out or None


_UNION_TAGS = frozenset({"str", "int", "float", "bool", "none"})


assert _Generation.model_fields["document_order"].annotation.__args__ == DOCUMENT_ORDERS  # one list of names
