"""Validating request bodies: pydantic models that accept unknown fields and report them.

Every problem becomes a 400 in OpenAI's shape naming the field (``messages[0].content``); unknown
fields are returned to the caller, which logs them, or refuses them in strict mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from deployments.http.errors import APIError, bad_request


class Body(BaseModel):
    """Base of every request body: strict types, frozen, unknown fields kept aside."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


def parse_body(model: type[Body], body: bytes, strict: bool = False) -> tuple[Any, list[str]]:
    """Validate a JSON body into ``model``.

    Returns:
        The request and the paths of the fields it carried that ``model`` does not know.

    Raises:
        APIError: 400 naming the first problem (bad JSON, a bad value, an unknown field when
            ``strict``).
    """
    try:
        parsed = model.model_validate_json(body)
    except ValidationError as e:
        raise _as_api_error(e) from None
    unknown = list(unknown_fields(parsed))
    if strict and unknown:
        raise bad_request(f"unsupported parameter {unknown[0]!r}", unknown[0], "unsupported_parameter")
    return parsed, unknown


def unknown_fields(obj: Any, path: str = "") -> Iterator[str]:
    """Paths of the extra fields anywhere in a validated body (``messages[0].tool_calls``)."""
    if isinstance(obj, BaseModel):
        for name in obj.model_extra or {}:
            yield f"{path}.{name}" if path else name
        for name in type(obj).model_fields:
            yield from unknown_fields(getattr(obj, name), f"{path}.{name}" if path else name)
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from unknown_fields(item, f"{path}[{i}]")


def _as_api_error(e: ValidationError) -> APIError:
    err = e.errors(include_url=False)[0]
    param = _param(err["loc"])
    kind, msg = err["type"], err["msg"].removeprefix("Value error, ")
    if kind == "json_invalid":
        return bad_request(f"the body is not valid JSON: {err.get('ctx', {}).get('error', msg)}", code="invalid_json")
    if kind == "model_type" and not err["loc"]:
        return bad_request("the body must be a JSON object", code="invalid_json")
    if kind == "missing":
        return bad_request(f"missing required parameter {param!r}", param, "missing_parameter")
    if kind == "unsupported_feature":
        return bad_request(msg, param, "unsupported_parameter")
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
