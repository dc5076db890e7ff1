"""``openimagen eval drawbench`` and ``openimagen rate``, registered into the main CLI.

Like :mod:`openimagen.serve.cli`, this module imports only light modules; torch, Accelerate
and FastAPI load when a command runs. Handlers raise
:class:`openimagen.errors.OpenImagenError` for bad input (printed as one line, exit 2).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from openimagen.argtypes import ranged
from openimagen.serve.server import DEFAULT_HOST

RATE_PORT = 8001


def register(
    subparsers: argparse._SubParsersAction,
    eval_subparsers: argparse._SubParsersAction,
    *,
    formatter: Callable[[str], argparse.HelpFormatter],
    add_sampling_options: Callable[[argparse.ArgumentParser], None],
    sampling_overrides: Callable[[argparse.Namespace], dict[str, Any]],
) -> None:
    """Add ``eval drawbench`` and ``rate``; the sampling options are the main CLI's own."""
    db = eval_subparsers.add_parser(
        "drawbench",
        help="draw DrawBench images with one or more models, resumably (docs/evaluation.md)",
        description="Draw every prompt's images with each model, on the same seeds for every "
        "model. Run the same command again to continue an interrupted run; several "
        "processes (torchrun / accelerate launch) split the work.",
        formatter_class=formatter,
    )
    db.add_argument(
        "--model",
        metavar="[NAME=]DIR",
        action="append",
        required=True,
        help="a model directory, repeated for each model; NAME labels its images and votes "
        "(default: the directory's name)",
    )
    db.add_argument("--out", metavar="DIR", required=True, help="run directory (new or a run's)")
    db.add_argument(
        "--prompts",
        metavar="FILE",
        default="drawbench",
        help="'drawbench' (the 200 shipped prompts) or a .csv (Prompt,Category) / .jsonl file",
    )
    db.add_argument(
        "--num-prompts",
        type=ranged(int, 1, 10**6, "an integer >= 1"),
        default=None,
        help="only this many prompts, taken round-robin over categories (default: all)",
    )
    db.add_argument(
        "--num-per-prompt",
        type=ranged(int, 1, 1000, "an integer in [1, 1000]"),
        default=8,
        help="images per prompt and model (the paper's sets have 8)",
    )
    db.add_argument(
        "--seed",
        type=ranged(int, 0, 2**62, "an integer in [0, 2**62]"),
        default=0,
        help="base seed; image k of prompt i uses SEED + 1000*i + k with every model",
    )
    db.add_argument(
        "--batch-size",
        type=ranged(int, 1, 4096, "an integer in [1, 4096]"),
        default=8,
        help="images per forward pass",
    )
    db.add_argument(
        "--stages",
        type=ranged(int, 1, 16, "an integer >= 1"),
        default=None,
        help="run only the first N stages of every model (default: all)",
    )
    add_sampling_options(db)
    db.add_argument(
        "--device",
        default="auto",
        help="'auto' (the process's GPU under torchrun, else the CPU), 'cpu', 'cuda' or 'cuda:N'",
    )
    db.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    db.set_defaults(func=lambda args: cmd_drawbench(args, sampling_overrides(args)))

    rate = subparsers.add_parser(
        "rate",
        help="blind side-by-side rating of a DrawBench run in the browser (docs/evaluation.md)",
        description="Serve the rating page for a DrawBench run: for each prompt, two models' "
        "image sets side by side (sides random, recorded), two questions, votes in SQLite. "
        "Results with 95%% intervals at /results.",
        formatter_class=formatter,
    )
    rate.add_argument("run", metavar="DIR", help="a DrawBench run directory (with manifest.jsonl)")
    rate.add_argument(
        "--models",
        nargs=2,
        metavar=("A", "B"),
        default=None,
        help="the two models to compare (default: the run's two models)",
    )
    rate.add_argument(
        "--db",
        metavar="FILE",
        default=None,
        help="SQLite file of the votes (default: DIR/ratings.sqlite)",
    )
    rate.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to bind; the default is reachable from this machine only",
    )
    rate.add_argument(
        "--port",
        metavar="N",
        type=ranged(int, 0, 65535, "an integer in [0, 65535]"),
        default=RATE_PORT,
        help="TCP port; 0 = any free one",
    )
    rate.add_argument(
        "--log-level",
        choices=["critical", "error", "warning", "info", "debug"],
        default="info",
        help="server log level",
    )
    rate.set_defaults(func=cmd_rate)


def cmd_drawbench(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from openimagen.eval.drawbench import ModelSpec, run_drawbench
    from openimagen.eval.prompts import load_prompt_suite

    models = [ModelSpec.parse(text) for text in args.model]
    suite = load_prompt_suite(args.prompts)
    result = run_drawbench(
        models,
        suite,
        args.out,
        num_prompts=args.num_prompts,
        num_per_prompt=args.num_per_prompt,
        seed=args.seed,
        batch_size=args.batch_size,
        sampling_overrides=overrides,
        num_stages=args.stages,
        device=args.device,
        progress=not args.quiet,
    )
    if result["manifest"] is not None:  # the main process
        print(f"{result['images']} images, {result['written']} drawn by this process; "
              f"manifest: {result['manifest']}")  # fmt: skip
    return 0


def cmd_rate(args: argparse.Namespace) -> int:
    from openimagen.eval.rate_app import run_rating_server

    run_rating_server(
        args.run,
        models=args.models,
        db_path=args.db,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
    )
    return 0
