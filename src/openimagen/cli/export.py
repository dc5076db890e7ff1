"""``openimagen export``: put a trained stage (its EMA weights) into a model directory."""

from __future__ import annotations

import argparse

from openimagen.cli.options import add_command, add_sampling_options, sampling_overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    exp = add_command(
        subparsers, "export", "put a trained stage (EMA weights) into a model directory"
    )
    exp.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="a training output directory or checkpoint"
    )
    exp.add_argument(
        "model", metavar="MODEL_DIR", help="model directory to create or add the stage to"
    )
    exp.add_argument("--fp16", action="store_true", help="store the weights in float16")
    exp.add_argument(
        "--overwrite", action="store_true", help="replace a non-model directory at MODEL_DIR"
    )
    add_sampling_options(exp, scope="this stage's default sampling")
    exp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from openimagen.train import export_stage

    out = export_stage(
        args.checkpoint,
        args.model,
        sampling_overrides=sampling_overrides(args),
        dtype=torch.float16 if args.fp16 else torch.float32,
        overwrite=args.overwrite,
    )
    print(out)
    return 0
