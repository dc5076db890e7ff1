"""What the commands share (cli/options.py): choices and ranges from SamplingConfig, one seed
limit, the old --guidance spelling, and each default shown once in --help."""

from __future__ import annotations

import argparse

import pytest

from cli_testutil import parse
from openimagen.cascade import CHOICES, LIMITS, MAX_SEED, SamplingConfig
from openimagen.cli import build_parser
from openimagen.cli.options import SAMPLING_OPTIONS, sampling_overrides

# every command that takes the sampling options, as a minimal valid command line
SAMPLING_COMMANDS = [
    ["generate", "a red circle"],
    ["export", "run", "model"],
    ["eval", "shapebench"],
    ["eval", "drawbench", "--model", "m", "--out", "o"],
]


def _option(field: str) -> str:
    dest = next(d for d, f in SAMPLING_OPTIONS.items() if f == field)
    return "--" + dest.replace("_", "-")


@pytest.mark.parametrize("command", SAMPLING_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_sampling_choices_are_exactly_samplingconfigs(command, capsys):
    for field, choices in CHOICES.items():
        for choice in choices:
            overrides = sampling_overrides(parse([*command, _option(field), choice]))
            assert SamplingConfig(**overrides) == SamplingConfig(**{field: choice})
        with pytest.raises(SystemExit):
            parse([*command, _option(field), "no-such-" + field])
        err = capsys.readouterr().err
        assert all(repr(c) in err for c in choices)


@pytest.mark.parametrize("field", sorted(LIMITS))
def test_sampling_ranges_are_exactly_samplingconfigs(field, capsys):
    limit = LIMITS[field]
    high = str(int(limit.high)) if limit.integer else repr(limit.high)
    overrides = sampling_overrides(parse(["generate", "x", _option(field), high]))
    assert SamplingConfig(**overrides) == SamplingConfig(**{field: limit.high})
    beyond = str(int(limit.high) + 1) if limit.integer else repr(limit.high + 0.5)
    with pytest.raises(SystemExit):
        parse(["generate", "x", _option(field), beyond])
    assert f"expected {limit.describe()}" in capsys.readouterr().err
    if limit.low_open:  # the open end is refused, as SamplingConfig refuses it
        with pytest.raises(SystemExit):
            parse(["generate", "x", _option(field), repr(limit.low)])


def test_guidance_keeps_its_old_spelling():
    old = sampling_overrides(parse(["generate", "x", "--guidance", "2.5"]))
    new = sampling_overrides(parse(["generate", "x", "--guidance-weight", "2.5"]))
    assert old == new == {"guidance_weight": 2.5}


@pytest.mark.parametrize(
    "command", [["generate", "x"], ["eval", "shapebench"], SAMPLING_COMMANDS[3]],
    ids=["generate", "eval shapebench", "eval drawbench"],
)  # fmt: skip
def test_every_seed_option_has_the_same_limit(command, capsys):
    assert parse([*command, "--seed", str(MAX_SEED)]).seed == MAX_SEED
    with pytest.raises(SystemExit):
        parse([*command, "--seed", str(MAX_SEED + 1)])
    with pytest.raises(SystemExit):
        parse([*command, "--seed", "-1"])
    assert f"expected an integer in [0, {MAX_SEED}]" in capsys.readouterr().err


def _commands(parser: argparse.ArgumentParser, prefix: str = "openimagen"):
    """Every (sub)command's parser, depth first."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{prefix} {name}")


def test_help_shows_each_default_once():
    commands = list(_commands(build_parser()))
    assert len(commands) == 14  # openimagen, its 10 commands, the 3 benchmarks of eval
    for name, parser in commands:
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.help in (None, argparse.SUPPRESS) or action.default is argparse.SUPPRESS:
                continue
            shown = formatter._get_help_string(action) % {"default": action.default}
            assert shown.count("(default:") <= 1, (name, action.dest, shown)
            if action.option_strings and not action.required:  # an option: says its default
                assert shown.count("(default:") == 1, (name, action.dest, shown)
            if action.required:  # no "(default: None)" on what must be given
                assert "(default: None)" not in shown, (name, action.dest, shown)
        assert "(default: the model's) (default:" not in parser.format_help()
