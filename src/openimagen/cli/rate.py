"""``openimagen rate``: the blind side-by-side rating page of a DrawBench run."""

from __future__ import annotations

import argparse

from openimagen.cli.options import add_command, add_server_options

RATE_PORT = 8001


def register(subparsers: argparse._SubParsersAction) -> None:
    rate = add_command(
        subparsers, "rate",
        "blind side-by-side rating of a DrawBench run in the browser (docs/evaluation.md)",
        description="Serve the rating page for a DrawBench run: for each prompt, two models' "
        "image sets side by side (sides random, recorded), two questions, votes in SQLite. "
        "Results with 95% intervals at /results.",
    )  # fmt: skip
    rate.add_argument("run", metavar="DIR", help="a DrawBench run directory (with manifest.jsonl)")
    rate.add_argument(
        "--models", nargs=2, metavar=("A", "B"), default=None,
        help="the two models to compare (default: the run's two models)",
    )  # fmt: skip
    rate.add_argument(
        "--db", metavar="FILE", default=None,
        help="SQLite file of the votes (default: DIR/ratings.sqlite)",
    )  # fmt: skip
    add_server_options(rate, RATE_PORT)
    rate.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from openimagen.serve.rate_app import run_rating_server

    run_rating_server(
        args.run, models=args.models, db_path=args.db, host=args.host, port=args.port,
        log_level=args.log_level,
    )  # fmt: skip
    return 0
