"""The ``openimagen`` command line: a thin layer over the public API.

Every subcommand prints user errors (:class:`OpenImagenError`) as one line on stderr and
exits with status 2; library code logs and never prints.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys

from openimagen import __version__
from openimagen.errors import OpenImagenError


def _cmd_info(args: argparse.Namespace) -> int:
    import torch

    print(f"openimagen {__version__}")
    print(f"python     {platform.python_version()}")
    print(f"torch      {torch.__version__} (cuda available: {torch.cuda.is_available()})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openimagen",
        description="Imagen-style text-to-image diffusion: generate, train, evaluate, serve.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"openimagen {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = sub.add_parser(
        "info",
        help="show versions and the compute device",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    info.set_defaults(func=_cmd_info)
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


if __name__ == "__main__":
    sys.exit(main())
