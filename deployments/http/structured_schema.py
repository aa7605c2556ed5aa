"""The structured-output fields of a generation request: OpenAI's ``response_format`` and vLLM's
``structured_outputs`` and ``guided_*`` extras, reduced to the engine's one constraint."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, model_validator

from deployments.http.bodies import Body
from engine.sampling_params import StructuredOutput


class JsonSchemaFormat(Body):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError('type "json_schema" needs a "json_schema" object')
        return self


class StructuredOutputsSpec(Body):
    """vLLM's ``structured_outputs``: exactly one of its constraints."""

    json_: dict[str, Any] | str | None = Field(default=None, alias="json")
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None
    json_object: bool | None = None


def structured_output(rf: ResponseFormat | None, so: StructuredOutputsSpec | None,
                      guided_json: dict[str, Any] | str | None, guided_regex: str | None,
                      guided_choice: list[str] | None, guided_grammar: str | None) -> StructuredOutput | None:
    """The one output constraint a request names, if any.

    Raises:
        ValueError: more than one is named.
    """
    found: list[StructuredOutput] = []
    if rf is not None and rf.type == "json_object":
        found.append(StructuredOutput("json_object"))
    if rf is not None and rf.type == "json_schema":
        schema = rf.json_schema.schema_
        found.append(StructuredOutput("json_schema", json.dumps(schema)) if schema is not None
                     else StructuredOutput("json_object"))
    so = so or StructuredOutputsSpec()
    for schema in (guided_json, so.json_):
        if schema is not None:
            found.append(StructuredOutput("json_schema", schema if isinstance(schema, str) else json.dumps(schema)))
    for regex in (guided_regex, so.regex):
        if regex is not None:
            found.append(StructuredOutput("regex", regex))
    for choice in (guided_choice, so.choice):
        if choice is not None:
            found.append(StructuredOutput("choice", choices=tuple(choice)))
    for grammar in (guided_grammar, so.grammar):
        if grammar is not None:
            found.append(StructuredOutput("grammar", grammar))
    if so.json_object:
        found.append(StructuredOutput("json_object"))
    if len(found) > 1:
        raise ValueError("name at most one structured output constraint (response_format, structured_outputs, "
                         "guided_json, guided_regex, guided_choice, guided_grammar)")
    return found[0] if found else None
