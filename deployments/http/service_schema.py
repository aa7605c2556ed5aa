"""Request bodies of the endpoints other than generation: the documents API and the tokenizer."""

from __future__ import annotations

from pydantic import Field, model_validator

from deployments.http.bodies import Body
from deployments.http.schema import ChatMessage


class DocumentIn(Body):
    id: str = Field(min_length=1)
    text: str


class RegisterDocumentsRequest(Body):
    """``POST /v1/documents``."""

    documents: list[DocumentIn] = Field(min_length=1)


class TokenizeRequest(Body):
    """``POST /tokenize``: a prompt, or chat messages rendered through the chat template."""

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True

    @model_validator(mode="after")
    def _one_of(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError('tokenize takes "prompt" or "messages"')
        return self


class DetokenizeRequest(Body):
    """``POST /detokenize``."""

    model: str | None = None
    tokens: list[int]
