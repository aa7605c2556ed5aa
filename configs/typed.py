"""A frozen dataclass from a YAML mapping, with every key and value checked against the
dataclass's own field types, and every error naming its key path::

    from_mapping(StoreConfig, {"memory_byts": 1}, "store")
      -> ValueError: unknown key store.memory_byts; valid keys: memory_bytes, ...
    from_mapping(EngineConfig, {"model": "m", "link_policy": {"name": "naive", "tail": "x"}}, "engine")
      -> ValueError: engine.link_policy.tail must be float, got 'x'

Supported field types: int, float (an int is widened), bool, str, ``X | None``, ``Literal``,
``dict[K, V]``, and nested dataclasses (a nested mapping). Range and cross-field rules stay in each
dataclass's ``__post_init__``; :func:`check_types` lets it check its types the same way when
it is built from Python rather than YAML.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar

T = TypeVar("T")


def from_mapping(cls: type[T], data: Any, path: str = "") -> T:
    """``cls(**data)`` after checking ``data``'s keys and values (None: every default).
    ``path`` names ``data`` in messages ("" for a whole file: keys are then named alone).

    Raises:
        ValueError: not a mapping, an unknown or a missing key (the valid ones listed), a value
            of the wrong type, or the dataclass's own validation failing; each message starts
            with the path.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{path or 'the config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names), key=str)
    if unknown:
        raise ValueError(f"unknown key {_join(path, unknown[0])}; valid keys: {', '.join(names)}")
    required = [f.name for f in dataclasses.fields(cls) if f.init and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise ValueError(f"missing key {_join(path, missing[0])}")
    values = {name: check_value(hints[name], value, _join(path, name)) for name, value in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        message = str(e)
        raise ValueError(message if not path or message.startswith(path) else f"{path}: {message}") from None


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def check_types(instance: Any) -> None:
    """Check (and widen int -> float in) every field of a frozen dataclass instance; errors
    name ``ClassName.field``."""
    hints = typing.get_type_hints(type(instance))
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        checked = check_value(hints[f.name], value, f"{type(instance).__name__}.{f.name}")
        if checked is not value:
            object.__setattr__(instance, f.name, checked)


def check_value(hint: Any, value: Any, path: str) -> Any:
    """``value`` checked against one field's type (an int widened for a float field, a mapping
    built into a nested dataclass)."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        options = typing.get_args(hint)
        if value not in options:
            raise ValueError(f"{path} is {value!r}; valid values: {', '.join(map(str, options))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return check_value(inner, value, path)
    if origin is dict:
        key_type, value_type = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ValueError(f"{path} must be a mapping, got {value!r}")
        return {check_value(key_type, k, f"{path} key"): check_value(value_type, v, _join(path, k))
                for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else from_mapping(hint, value, path)
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if hint is float and (is_int or isinstance(value, float)):
        return float(value) if is_int else value
    if (hint is int and is_int) or (hint is bool and isinstance(value, bool)) \
            or (hint is str and isinstance(value, str)):
        return value
    raise ValueError(f"{path} must be {getattr(hint, '__name__', hint)}, got {value!r}")
