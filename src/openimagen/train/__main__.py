"""``python -m openimagen.train CONFIG.toml [--output DIR] [--resume auto|PATH] [--dry-run]``.

The same as ``openimagen train``; handy under ``torchrun`` / ``accelerate launch``, which
start a Python module or script per process.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from openimagen.errors import OpenImagenError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openimagen.train", description=__doc__)
    parser.add_argument("config", help="training config (TOML)")
    parser.add_argument("--output", default=None, help="output directory (default: runs/<stem>)")
    parser.add_argument("--resume", default=None, help="'auto' or a checkpoint directory")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from openimagen.train import train

    try:
        result = train(
            args.config, output_dir=args.output, resume=args.resume, dry_run=args.dry_run
        )
    except OpenImagenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(json.dumps({"config": result.config.to_dict(),
                          "stage_config": result.stage_config.to_dict()}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
