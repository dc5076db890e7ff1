"""``openimagen verify``: is this image one of ours? The watermark and the provenance chunks.

Exit status like grep: 0 if every image is marked, 1 if one is not; an unreadable image is an
error (exit 2) after the readable ones have been reported. Text from the file is printed with
every unprintable character escaped, so a crafted file cannot drive the terminal.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from openimagen.cli.options import add_command
from openimagen.errors import InvalidArgumentError


def register(subparsers: argparse._SubParsersAction) -> None:
    verify = add_command(
        subparsers, "verify", "detect the invisible watermark and show provenance chunks",
        description="Check images for openimagen's invisible watermark and print their "
        "provenance text chunks. Exit status: 0 every image marked, 1 one is not, "
        "2 an image could not be read.",
    )  # fmt: skip
    verify.add_argument("images", nargs="+", metavar="IMAGE", help="image files to check")
    verify.add_argument(
        "--json", action="store_true", help="print one JSON object per image instead of text"
    )
    verify.set_defaults(func=run)


def _shown(text: str) -> str:
    """``text`` safe to print to a terminal: every character that is not printable (control
    characters such as ESC, line breaks, bidirectional overrides) written as its escape,
    so a crafted file cannot send terminal commands or fake extra lines."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def _describe(result: dict) -> list[str]:
    from openimagen.images import AI_GENERATED_KEY
    from openimagen.watermark import MIN_SIZE

    verdict = "watermarked" if result["marked"] else "no openimagen watermark found"
    lines = [
        f"{_shown(result['path'])}: {verdict} (score {result['score']:.2f}, "
        f"threshold {result['threshold']:g})"
    ]
    if not result["markable"]:
        lines.append(f"  smaller than {MIN_SIZE}x{MIN_SIZE} px: too small to carry the mark")
    meta = result["metadata"]
    if meta:
        flag = meta.get(AI_GENERATED_KEY)
        ordered = ([AI_GENERATED_KEY] if flag is not None else []) + sorted(
            k for k in meta if k != AI_GENERATED_KEY
        )
        lines += [f"  {_shown(key)}: {_shown(meta[key])}" for key in ordered]
    else:
        lines.append("  no provenance text chunks")
    return lines


def run(args: argparse.Namespace) -> int:
    """Check each image for the watermark and print its provenance chunks.

    Exit status like grep: 0 if every image is marked, 1 if one is not; an unreadable
    image raises (exit 2) after the readable ones have been reported.
    """
    from openimagen.watermark import verify_image

    all_marked = True
    unreadable: dict[str, str] = {}
    for name in args.images:
        try:
            result = verify_image(Path(name))
        except InvalidArgumentError as exc:
            unreadable[name] = str(exc.__cause__ or exc)
            continue
        all_marked &= bool(result["marked"])
        if args.json:
            print(json.dumps(result, sort_keys=True))
        else:
            print("\n".join(_describe(result)))
    if unreadable:
        names = list(unreadable)
        raise InvalidArgumentError(
            "IMAGE",
            names[0] if len(names) == 1 else names,
            "a readable image file (PNG, JPEG, WebP...)",
            "; ".join(_shown(f"{name}: {reason}") for name, reason in unreadable.items()),
        )
    return 0 if all_marked else 1
