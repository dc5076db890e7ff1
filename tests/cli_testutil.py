"""Running the command line in the test process."""

from __future__ import annotations

import argparse

from openimagen.cli import build_parser, main


def run(argv, capsys):
    """``main(argv)``: its exit status, then what it printed to stdout and stderr."""
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def parse(argv: list[str]) -> argparse.Namespace:
    """The parsed arguments of ``openimagen ARGV``."""
    return build_parser().parse_args(argv)


def call(argv: list[str]) -> int:
    """Run the command's handler directly: its errors raise instead of printing one line."""
    args = parse(argv)
    return args.func(args)
