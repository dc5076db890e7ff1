"""``openimagen import-if``: a model directory from local DeepFloyd IF checkpoints.

``openimagen import-if STAGE1_DIR [STAGE2_DIR] OUT_DIR`` reads IF stage directories in the
diffusers layout (docs/deepfloyd-if.md) and writes OUT_DIR, which ``generate``, ``eval``,
``serve`` and ``verify`` take as ``--model``. Nothing is downloaded.
"""

from __future__ import annotations

import argparse

from openimagen.cli.options import add_command
from openimagen.errors import InvalidArgumentError

DTYPE_CHOICES = ("auto", "fp32", "fp16", "bf16")  # openimagen.interop.DTYPES, and "auto"


def register(subparsers: argparse._SubParsersAction) -> None:
    imp = add_command(
        subparsers, "import-if",
        "make a model directory from local DeepFloyd IF checkpoints (docs/deepfloyd-if.md)",
        usage="openimagen import-if [-h] [--dtype DTYPE] [--variant NAME] [--overwrite] "
        "STAGE1_DIR [STAGE2_DIR] OUT_DIR",
    )  # fmt: skip
    imp.add_argument(
        "dirs", metavar="STAGE1_DIR [STAGE2_DIR] OUT_DIR", nargs="+",
        help="IF stage I (IF-I-*) and optionally stage II (IF-II-*) checkpoint directories, "
        "then the model directory to create",
    )  # fmt: skip
    imp.add_argument(
        "--dtype", choices=DTYPE_CHOICES, default="auto",
        help="dtype the U-Net weights are stored in ('auto': the checkpoint's)",
    )  # fmt: skip
    imp.add_argument(
        "--variant", metavar="NAME", default=None,
        help="weight variant to read, e.g. 'fp16' for *.fp16.safetensors (default: the plain "
        "files, else the fp16 ones)",
    )  # fmt: skip
    imp.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    imp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if len(args.dirs) not in (2, 3):
        raise InvalidArgumentError(
            "STAGE1_DIR [STAGE2_DIR] OUT_DIR", " ".join(args.dirs),
            "two or three directories: stage I, optionally stage II, then the output",
        )  # fmt: skip
    from openimagen.interop import import_deepfloyd_if

    stage1, *stage2, out = args.dirs
    path = import_deepfloyd_if(
        stage1, stage2[0] if stage2 else None, out, dtype=args.dtype, variant=args.variant,
        overwrite=args.overwrite,
    )  # fmt: skip
    print(path)
    return 0
