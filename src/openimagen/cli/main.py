"""The parser of every command, and :func:`main`: run one, print user errors as one line.

Every command prints an :class:`~openimagen.errors.OpenImagenError` as one line on stderr
and exits with status 2; library code logs and never prints.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from openimagen.cli import (
    encode_text,
    evaluate,
    export,
    generate,
    import_if,
    info,
    rate,
    serve,
    train,
    verify,
)
from openimagen.cli.options import HelpFormatter
from openimagen.errors import OpenImagenError
from openimagen.version import __version__

# in the order `openimagen --help` lists them
COMMANDS = (info, generate, encode_text, serve, verify, train, export, import_if, evaluate, rate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openimagen",
        description="Imagen-style text-to-image diffusion: generate, train, evaluate, serve.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"openimagen {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except OpenImagenError as exc:
        print(f"openimagen {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"openimagen {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            # the reader went away (`openimagen ... | head`): stop quietly, as Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"openimagen {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
