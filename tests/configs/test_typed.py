"""configs.typed: every key and value checked against the dataclass's own field types, each
error naming its key path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from configs.typed import check_types, from_mapping


@dataclass(frozen=True)
class Inner:
    name: Literal["a", "b"] = "a"
    ratio: float = 0.5


@dataclass(frozen=True)
class Outer:
    size: int
    label: str | None = None
    on: bool = False
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"size must be >= 0, got {self.size}")


def test_builds_nested_sections_and_widens_ints():
    got = from_mapping(Outer, {"size": 3, "label": None, "inner": {"name": "b", "ratio": 1}}, "outer")
    assert got == Outer(3, None, False, Inner("b", 1.0))
    assert isinstance(got.inner.ratio, float)
    assert from_mapping(Inner, None, "inner") == Inner()


@pytest.mark.parametrize("data,message", [
    ({"size": 1, "sise": 2}, "unknown key outer.sise; valid keys: size, label, on, inner"),
    ({}, "missing key outer.size"),
    ({"size": "3"}, "outer.size must be int, got '3'"),
    ({"size": True}, "outer.size must be int, got True"),
    ({"size": 1, "on": 1}, "outer.on must be bool, got 1"),
    ({"size": 1, "inner": {"name": "c"}}, "outer.inner.name is 'c'; valid values: a, b"),
    ({"size": 1, "inner": {"rate": 1}}, "unknown key outer.inner.rate; valid keys: name, ratio"),
    ({"size": 1, "inner": [1]}, "outer.inner must be a mapping, got [1]"),
    ({"size": -1}, "outer: size must be >= 0, got -1"),
    ([1], "outer must be a mapping, got [1]"),
])
def test_errors_name_the_key_path(data, message):
    with pytest.raises(ValueError) as e:
        from_mapping(Outer, data, "outer")
    assert str(e.value) == message


def test_a_whole_file_names_keys_alone():
    with pytest.raises(ValueError, match="^unknown key sise; valid keys"):
        from_mapping(Outer, {"sise": 1})
    with pytest.raises(ValueError, match="^the config must be a mapping"):
        from_mapping(Outer, "x")


def test_check_types_in_post_init_widens_and_refuses():
    @dataclass(frozen=True)
    class Checked:
        ratio: float = 1
        count: int = 0

        def __post_init__(self) -> None:
            check_types(self)

    assert isinstance(Checked().ratio, float)
    with pytest.raises(ValueError, match="^Checked.count must be int, got 1.5$"):
        Checked(count=1.5)
