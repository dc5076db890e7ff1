"""``openimagen info``: versions, the bundled model, U-Net presets, a model's card."""

from __future__ import annotations

import argparse
import platform

from openimagen.cli.options import add_command
from openimagen.version import __version__


def register(subparsers: argparse._SubParsersAction) -> None:
    info = add_command(subparsers, "info", "show versions, presets, or one preset's size")
    info.add_argument(
        "--preset", metavar="NAME", default=None,
        help="describe a U-Net preset: sizes and parameter count",
    )  # fmt: skip
    info.add_argument(
        "--model", metavar="DIR", default=None, help="print this model directory's model card"
    )
    info.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.preset:
        from openimagen.models.presets import describe_preset

        print(describe_preset(args.preset))
        return 0
    import torch

    import openimagen
    from openimagen.modelcard import read_model_card
    from openimagen.models.presets import list_presets

    if args.model:
        print(read_model_card(openimagen.resolve_model_dir(args.model)))
        return 0
    bundled = openimagen.BUNDLED_MODEL_DIR
    print(f"openimagen {__version__}")
    print(f"python     {platform.python_version()}")
    print(f"torch      {torch.__version__} (cuda available: {torch.cuda.is_available()})")
    print(f"bundled    {bundled if (bundled / 'cascade.json').is_file() else '(none yet)'}")
    print(f"presets    {', '.join(list_presets())}")
    if (bundled / "README.md").is_file():  # its model card
        print("\n" + read_model_card(bundled))
    return 0
