"""Link policies as short labels: ``full``, ``legolink:k=16``, ``cacheblend:ratio=0.15``.

A label is a policy name, then optionally ``:`` and comma-separated ``field=value`` pairs
naming :class:`engine.segments.LinkPolicy`'s dataclass fields. Values are converted by the
fields' declared types (int, float, bool, str, Literal, optional ``X | None``), so a policy or
field added to ``LinkPolicy`` needs no change here. A list of labels is comma-separated too:
``full,legolink:k=16,sink=true,naive`` is three labels (a piece with ``=`` and no ``:``
continues the label before it).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence

from engine.segments import LinkPolicy

_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _fields() -> dict[str, type]:
    hints = typing.get_type_hints(LinkPolicy)
    return {f.name: hints[f.name] for f in dataclasses.fields(LinkPolicy) if f.init and f.name != "name"}


def parse_policy(label: str) -> LinkPolicy:
    """``name[:field=value,...]`` -> LinkPolicy.

    Raises:
        ValueError: an empty label, a pair without ``=``, a repeated, unknown or ``name``
            field, a value its field's type rejects, or a policy LinkPolicy itself rejects.
    """
    name, fields = _split_label(label)
    return LinkPolicy(name, **fields)


def policy_label(policy: LinkPolicy, fields: Sequence[str] | None = None) -> str:
    """The label of ``policy``, listing ``fields`` (default: those that differ from their
    defaults); ``parse_policy(policy_label(p)) == p``."""
    if fields is None:
        defaults = LinkPolicy(policy.name)
        fields = [f for f in _fields() if getattr(policy, f) != getattr(defaults, f)]
    pairs = [f"{f}={_format(getattr(policy, f))}" for f in fields]
    return policy.name + (":" + ",".join(pairs) if pairs else "")


def canonical_label(label: str) -> str:
    """``label`` with its values in their canonical form and the fields it names, in order
    (``legolink:k=016`` -> ``legolink:k=16``)."""
    name, fields = _split_label(label)
    return policy_label(LinkPolicy(name, **fields), list(fields))


def split_policy_list(text: str) -> list[str]:
    """A comma-separated list of labels -> the labels."""
    labels: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if "=" in piece and ":" not in piece:
            if not labels:
                raise ValueError(f"{piece!r} is a field=value pair with no policy name before it")
            labels[-1] += "," + piece
        else:
            labels.append(piece)
    return labels


def _split_label(label: str) -> tuple[str, dict]:
    name, _, rest = label.strip().partition(":")
    if not name:
        raise ValueError(f"a link policy label needs a name, got {label!r}")
    known = _fields()
    fields: dict = {}
    for pair in (p.strip() for p in rest.split(",")) if rest.strip() else ():
        key, eq, value = (s.strip() for s in pair.partition("="))
        if not eq or not key:
            raise ValueError(f"{pair!r} in {label!r} is not a field=value pair")
        if key == "name":
            raise ValueError(f"the policy name goes before the ':', not in a field ({label!r})")
        if key not in known:
            raise ValueError(f"LinkPolicy has no field {key!r}; valid: {', '.join(known)}")
        if key in fields:
            raise ValueError(f"field {key!r} is given twice in {label!r}")
        fields[key] = _convert(value, known[key], key)
    return name, fields


def _convert(text: str, kind, key: str):
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        if text.lower() == "none":
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(text, inner, key)
    if typing.get_origin(kind) is typing.Literal:
        for choice in args:
            if str(choice) == text:
                return choice
        raise ValueError(f"{key} must be one of {', '.join(map(str, args))}, got {text!r}")
    if kind is bool:
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ValueError(f"{key} must be true or false, got {text!r}")
    if kind in (int, float, str):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"{key} must be {'an' if kind is int else 'a'} {kind.__name__}, got {text!r}") from None
    raise ValueError(f"field {key} has type {kind}, which a label cannot set")


def _format(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)
