"""``openimagen train``: train one stage of a cascade from a TOML config (docs/training.md).

``python -m openimagen.train`` (for torchrun / accelerate launch) runs this command.
"""

from __future__ import annotations

import argparse
import json

from openimagen.cli.options import add_command


def register(subparsers: argparse._SubParsersAction) -> None:
    trn = add_command(subparsers, "train", "train one stage of a cascade from a TOML config")
    trn.add_argument(
        "config", metavar="CONFIG", help="training config (TOML); see docs/training.md"
    )
    trn.add_argument(
        "--output", metavar="DIR", default=None, help="output directory (default: runs/<stem>)"
    )
    trn.add_argument(
        "--resume", metavar="auto|CHECKPOINT", default=None,
        help="continue from the newest intact checkpoint in --output, or from this one",
    )  # fmt: skip
    trn.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    trn.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from openimagen.train import train

    result = train(args.config, output_dir=args.output, resume=args.resume, dry_run=args.dry_run)
    if args.dry_run:
        resolved = {
            "config": result.config.to_dict(),
            "stage_config": result.stage_config.to_dict(),
        }
        print(json.dumps(resolved, indent=2))
        return 0
    if not result.main_process:  # under torchrun the main process alone reports the run
        return 0
    if not result.losses and result.resumed_from is not None:  # nothing left to do
        print(
            f"already at step {result.step} of {result.config.train.steps}, nothing to train; "
            f"checkpoint: {result.resumed_from}"
        )
        return 0
    print(f"trained to step {result.step}; checkpoint: {result.checkpoint}")
    return 0
