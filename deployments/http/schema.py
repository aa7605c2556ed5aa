"""Request bodies of the generation endpoints: OpenAI's and vLLM's fields, with vLLM's meanings.

Unknown fields are accepted and reported (the ingress logs a warning naming them), as vLLM
does; with ``ingress.strict: true`` they are a 400 naming the first one. Extensions (OpenAI
clients send them with ``extra_body``): vLLM's sampling fields (``top_k``, ``min_p``,
``min_tokens``, ``repetition_penalty``, ``stop_token_ids``, ``ignore_eos``,
``skip_special_tokens``, ``include_stop_str_in_output``, ``cache_salt``, ``guided_*``,
``structured_outputs``), and ours: ``documents``, ``link_policy``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from deployments.http.bodies import Body
from deployments.http.structured_schema import ResponseFormat, StructuredOutputsSpec, structured_output
from engine.sampling_params import SamplingParams, StructuredOutput
from engine.segments import LINK_POLICY_NAMES, LinkPolicy
from deployments.document_order import DOCUMENT_ORDERS

MAX_STOP_SEQUENCES = 4
MAX_LOGPROBS = 20
MAX_PROMPTS = 64
MAX_SEQUENCES = 16  # n, or best_of, per prompt


class DocumentRef(Body):
    """A document given inline (``text``, vLLM's ``{"title", "text"}`` shape) or registered
    earlier (``id``); exactly one of ``text`` and ``id``."""

    text: str | None = None
    id: str | None = None
    title: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> DocumentRef:
        if (self.text is None) == (self.id is None):
            raise ValueError('a document is {"text": ...} or {"id": ...} (a text may come with a "title")')
        if self.title is not None and self.id is not None:
            raise ValueError("a registered document ({\"id\"}) takes no title")
        return self

    @property
    def model_text(self) -> str | None:
        """What the model reads: the title (when given) on its own line, then the text."""
        if self.text is None or not self.title:
            return self.text
        return f"{self.title}\n{self.text}"


class LinkPolicySpec(Body):
    name: Literal["full", "prefix", "naive", "legolink", "cacheblend", "query"]
    k: int = Field(default=16, ge=0)
    ratio: float = Field(default=0.15, ge=0.0, le=1.0)
    tail: float = Field(default=0.0, ge=0.0, le=1.0)
    chunk_bos: bool = False

    def to_policy(self) -> LinkPolicy:
        return LinkPolicy(self.name, self.k, self.ratio, self.tail, self.chunk_bos)


assert LinkPolicySpec.model_fields["name"].annotation.__args__ == LINK_POLICY_NAMES  # one list of names


class StreamOptions(Body):
    include_usage: bool | None = False
    continuous_usage_stats: bool | None = False


class _Generation(Body):
    """Fields shared by both endpoints (``model`` may be left out: the served model, as in vLLM)."""

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=-1)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    n: int | None = Field(default=None, ge=1, le=MAX_SEQUENCES)
    best_of: int | None = Field(default=None, ge=1, le=MAX_SEQUENCES)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False
    min_tokens: int = Field(default=0, ge=0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    logit_bias: dict[str, float] | None = None
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    user: str | None = None
    cache_salt: str | None = Field(default=None, min_length=1)
    response_format: ResponseFormat | None = None
    structured_outputs: StructuredOutputsSpec | None = None
    guided_json: dict[str, Any] | str | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None
    documents: list[DocumentRef] | None = None
    link_policy: LinkPolicySpec | None = None
    document_order: Literal["as_given", "retrieval", "lexical"] = "as_given"
    prompt_logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > MAX_STOP_SEQUENCES or any(not s for s in stops):
            raise ValueError(f"stop is at most {MAX_STOP_SEQUENCES} non-empty strings")
        return stop

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for token, bias in (value or {}).items():
            if not token.isdigit():
                raise ValueError(f"logit_bias keys are token ids, got {token!r}")
            if not -100.0 <= bias <= 100.0:
                raise ValueError(f"logit_bias values are in [-100, 100], got {bias}")
        return value

    @property
    def question(self) -> str:
        """The text documents are ranked against for ``document_order``."""
        return ""

    @model_validator(mode="after")
    def _sequences(self) -> _Generation:
        if self.best_of is not None and self.best_of < self.num_choices:
            raise ValueError(f"best_of ({self.best_of}) must be at least n ({self.num_choices})")
        if self.stream and self.num_sequences > self.num_choices:
            raise ValueError("best_of > n cannot be streamed: the best sequences are known only at the end")
        if self.stream and self.prompt_logprobs is not None:
            raise ValueError("prompt_logprobs cannot be streamed")
        return self

    # ---- what the ingress asks of the engine ---------------------------------------------------

    @property
    def num_choices(self) -> int:
        return self.n or 1

    @property
    def num_sequences(self) -> int:
        """Sequences generated per prompt (``best_of`` of them, the best ``n`` returned)."""
        return self.best_of or self.num_choices

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    @property
    def num_logprobs(self) -> int | None:
        """None: no logprobs; otherwise how many alternatives per token."""
        raise NotImplementedError

    @property
    def num_prompt_logprobs(self) -> int | None:
        """None: no prompt logprobs; otherwise how many alternatives per prompt token (the
        request is then computed in full: see :mod:`engine.prompt_logprobs`)."""
        return self.prompt_logprobs

    def structured(self) -> StructuredOutput | None:
        """The one output constraint the request names, if any (ValueError: more than one)."""
        return structured_output(self.response_format, self.structured_outputs, self.guided_json,
                                 self.guided_regex, self.guided_choice, self.guided_grammar)

    def sampling(self, max_tokens: int) -> SamplingParams:
        """The engine's sampling parameters for this request (``max_tokens`` resolved by the
        ingress).

        Raises:
            ValueError: parameters the engine refuses together (e.g. min_tokens > max_tokens).
        """
        num_logprobs = self.num_logprobs
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_k=self.top_k or 0,
            top_p=1.0 if self.top_p is None else self.top_p,
            min_p=self.min_p or 0.0,
            seed=self.seed,
            stop=stop,
            stop_token_ids=tuple(self.stop_token_ids or ()),
            ignore_eos=self.ignore_eos,
            min_tokens=self.min_tokens,
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
            repetition_penalty=1.0 if self.repetition_penalty is None else self.repetition_penalty,
            logit_bias=tuple((int(t), b) for t, b in (self.logit_bias or {}).items()),
            logprobs=num_logprobs is not None,
            top_logprobs=num_logprobs or 0,
            prompt_logprobs=self.num_prompt_logprobs,
            n=self.num_sequences,
            skip_special_tokens=self.skip_special_tokens,
            include_stop_str_in_output=self.include_stop_str_in_output,
            structured=self.structured(),
        )

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options is not None and self.stream_options.include_usage)

    @property
    def continuous_usage(self) -> bool:
        return bool(self.stream and self.stream_options is not None and self.stream_options.continuous_usage_stats)


Prompt = str | list[int]


class CompletionRequest(_Generation):
    """``POST /v1/completions``: a prompt (text or token ids) or a batch of them."""

    prompt: str | list[int] | list[str] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    suffix: str | None = None

    @property
    def question(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else ""

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, prompt: Any) -> Any:
        batch = prompt if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)) else [prompt]
        if len(batch) > MAX_PROMPTS:
            raise ValueError(f"at most {MAX_PROMPTS} prompts per request")
        for p in batch:
            if isinstance(p, list) and not p:
                raise ValueError("a prompt is empty")
            if isinstance(p, list) and any(t < 0 for t in p):
                raise ValueError("token ids must be >= 0")
        return prompt

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value: str | None) -> str | None:
        if value:
            raise ValueError("suffix is not supported")
        return value

    @property
    def prompts(self) -> list[Prompt]:
        p = self.prompt
        return p if isinstance(p, list) and p and isinstance(p[0], (str, list)) else [p]

    @property
    def num_logprobs(self) -> int | None:
        return self.logprobs

    @property
    def num_prompt_logprobs(self) -> int | None:
        """``prompt_logprobs``, else ``logprobs`` when echoing (the echoed prompt's tokens
        carry logprobs too), as vLLM does."""
        if self.prompt_logprobs is None and self.echo:
            return self.logprobs
        return self.prompt_logprobs

    @property
    def echo_logprobs(self) -> bool:
        return self.echo and self.logprobs is not None


class ContentPart(Body):
    type: Literal["text"]
    text: str


class ChatMessage(Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def as_template_message(self) -> dict[str, str]:
        """``{"role", "content"}`` with text parts joined; ``developer`` is OpenAI's new name
        for ``system``."""
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


NO_TOOLS = "tool calling is not supported for this model"
_RESERVED_TEMPLATE_KWARGS = frozenset({"messages", "conversation", "documents", "tokenize", "add_generation_prompt",
                                       "continue_final_message"})


class ChatCompletionRequest(_Generation):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    tool_choice: str | dict[str, Any] | None = None  # before tools: their validator reads it
    tools: list[dict[str, Any]] | None = None
    parallel_tool_calls: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    echo: bool = False
    add_generation_prompt: bool = True
    continue_final_message: bool = False

    @property
    def question(self) -> str:
        """The last user message's text."""
        users = [m.as_template_message()["content"] for m in self.messages if m.role == "user"]
        return users[-1] if users else ""

    @field_validator("tool_choice")
    @classmethod
    def _no_tool_choice(cls, choice: str | dict | None) -> str | dict | None:
        if choice not in (None, "none", "auto"):
            raise PydanticCustomError("unsupported_feature", NO_TOOLS)
        return choice

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, tools: list | None, info: ValidationInfo) -> list | None:
        # As in vLLM, tools with tool_choice "none" are accepted: the model is not to call them.
        if tools and info.data.get("tool_choice") != "none":
            raise PydanticCustomError("unsupported_feature", NO_TOOLS)
        return tools

    @field_validator("chat_template_kwargs")
    @classmethod
    def _template_kwargs(cls, kwargs: dict[str, Any] | None) -> dict[str, Any] | None:
        reserved = sorted(set(kwargs or {}) & _RESERVED_TEMPLATE_KWARGS)
        if reserved:
            raise ValueError(f"{reserved[0]!r} is set by the server, not by chat_template_kwargs")
        return kwargs

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs=true")
        return self

    @model_validator(mode="after")
    def _one_way_to_end_the_prompt(self) -> ChatCompletionRequest:
        if self.add_generation_prompt and self.continue_final_message:
            raise ValueError("add_generation_prompt and continue_final_message cannot both be true: "
                             "set add_generation_prompt to false to continue the final message")
        return self

    @property
    def template_options(self) -> dict[str, bool]:
        """How the chat template ends the prompt: a new reply's header, or the final message left
        open to be continued."""
        return {"add_generation_prompt": self.add_generation_prompt,
                "continue_final_message": self.continue_final_message}

    @property
    def reply_role(self) -> str:
        """The role being generated: the assistant after a generation prompt, else the final
        message's (vLLM's meaning)."""
        return "assistant" if self.add_generation_prompt else self.messages[-1].as_template_message()["role"]

    @property
    def echo_text(self) -> str:
        """``echo``: the final message's content, when it has the role being generated."""
        last = self.messages[-1].as_template_message()
        return last["content"] if self.echo and last["role"] == self.reply_role else ""

    @property
    def requested_max_tokens(self) -> int | None:
        """``max_completion_tokens`` (OpenAI's current name) over ``max_tokens``."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def num_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None


assert _Generation.model_fields["document_order"].annotation.__args__ == DOCUMENT_ORDERS  # one list of names
