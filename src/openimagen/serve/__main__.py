"""``python -m openimagen.serve --model DIR``: the server without the full CLI."""

from __future__ import annotations

import argparse
import logging
import sys

from openimagen.errors import OpenImagenError
from openimagen.serve.cli import add_serve_arguments, cmd_serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m openimagen.serve",
        description="Serve a model over an OpenAI-compatible HTTP API with a web page.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return cmd_serve(args)
    except OpenImagenError as exc:
        print(f"openimagen serve: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
