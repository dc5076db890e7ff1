"""Config base: JSON/TOML round trip and errors that name the key path."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from openimagen.config import Config, read_json, read_toml
from openimagen.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Inner(Config):
    width: int = 4
    scale: float = 1.0

    def validate(self) -> None:
        if self.width < 1:
            raise ConfigError(f"width={self.width}: expected >= 1")


@dataclasses.dataclass(frozen=True)
class Outer(Config):
    name: str
    mults: tuple[int, ...] = (1, 2)
    kind: Literal["base", "sr"] = "base"
    inner: Inner = Inner()
    optional: float | None = None
    flags: dict[str, bool] = dataclasses.field(default_factory=dict)


def test_round_trip_through_dict_and_json():
    config = Outer(
        name="a", mults=(1, 2, 4), kind="sr", inner=Inner(8, 0.5), optional=2.0, flags={"x": True}
    )
    assert Outer.from_dict(config.to_dict()) == config
    import json

    assert Outer.from_dict(json.loads(config.to_json())) == config


def test_ints_are_accepted_for_floats_but_not_bools_for_ints():
    assert Outer.from_dict({"name": "a", "inner": {"scale": 2}}).inner.scale == 2.0
    with pytest.raises(ConfigError, match=r"Outer.inner.width: expected an integer, got True"):
        Outer.from_dict({"name": "a", "inner": {"width": True}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": 3}, "Outer.name: expected a string, got 3"),
        ({"name": "a", "mults": [1, "two"]}, r"Outer.mults\[1\]: expected an integer, got 'two'"),
        ({"name": "a", "mults": 3}, "Outer.mults: expected a list"),
        ({"name": "a", "colour": 1}, "Outer: unknown key 'colour'; allowed keys: flags, inner"),
        ({}, "Outer: missing required key 'name'"),
        ({"name": "a", "kind": "xl"}, "Outer.kind: 'xl' is not one of 'base', 'sr'"),
        ({"name": "a", "inner": {"depth": 1}}, "Outer.inner: unknown key 'depth'"),
        ({"name": "a", "inner": {"width": 0}}, "Outer.inner: width=0: expected >= 1"),
        ({"name": "a", "flags": {"x": "yes"}}, "Outer.flags.x: expected true or false"),
        ([1, 2], "Outer: expected a table/object, got list"),
    ],
)
def test_errors_name_the_key_and_value(data, message):
    with pytest.raises(ConfigError, match=message):
        Outer.from_dict(data)


def test_toml_file_round_trip_and_file_errors(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('name = "t"\nmults = [1, 3]\n[inner]\nwidth = 2\n')
    assert Outer.from_toml_file(path) == Outer(name="t", mults=(1, 3), inner=Inner(width=2))
    path.write_text('name = "t"\n[inner]\nwidth = "2"\n')
    with pytest.raises(ConfigError, match=r"c.toml.inner.width: expected an integer"):
        Outer.from_toml_file(path)
    path.write_text("name = \n")
    with pytest.raises(ConfigError, match="c.toml: invalid TOML"):
        read_toml(path)
    with pytest.raises(ConfigError, match="cannot read .*missing.json"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"a": 1,\n}')
    with pytest.raises(ConfigError, match="bad.json: invalid JSON at line 2"):
        read_json(tmp_path / "bad.json")


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Outer(name="a").name = "b"


def test_iter_jsonl_names_each_line_and_skips_blank_ones():
    from openimagen.config import iter_jsonl
    from openimagen.errors import InvalidArgumentError

    text = '{"a": 1}\n\n  \n[2]\n'
    assert list(iter_jsonl(text, "f.jsonl")) == [
        ("f.jsonl line 1", {"a": 1}),
        ("f.jsonl line 4", [2]),
    ]
    with pytest.raises(
        InvalidArgumentError, match=r"f.jsonl line 2=.*one JSON object per line.*column"
    ):
        list(iter_jsonl('{"a": 1}\n{"a": \n', "f.jsonl"))
