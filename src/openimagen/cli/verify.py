"""``openimagen verify``: is this image one of ours? The C2PA manifest (Content Credentials),
the watermark and the provenance chunks.

Exit status like grep: 0 if every image is marked and none has a tampered or invalid
manifest, 1 otherwise; an unreadable image is an error (exit 2) after the readable ones have
been reported. Text from the file is printed with every unprintable character escaped, so a
crafted file cannot drive the terminal.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from openimagen.cli.options import add_command
from openimagen.errors import InvalidArgumentError


def register(subparsers: argparse._SubParsersAction) -> None:
    verify = add_command(
        subparsers, "verify", "check Content Credentials, the invisible watermark and provenance",
        description="Check images' C2PA manifest (valid, tampered, invalid or absent; the "
        "signer and the actions), openimagen's invisible watermark, and print their "
        "provenance text chunks. Exit status: 0 every image marked and no manifest "
        "tampered or invalid, 1 otherwise, 2 an image could not be read.",
    )  # fmt: skip
    verify.add_argument("images", nargs="+", metavar="IMAGE", help="image files to check")
    verify.add_argument(
        "--c2pa-trust", metavar="FILE", default=None,
        help="PEM CA certificates whose signers count as trusted (default: none is)",
    )  # fmt: skip
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
    lines += _describe_c2pa(result["c2pa"])
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


def _describe_c2pa(report: dict) -> list[str]:
    state = report["state"]
    if state == "absent":
        return ["  content credentials: none (no C2PA manifest)"]
    trust = "trusted signer" if report["trusted"] else "signer not trusted"
    lines = [f"  content credentials: {state} ({trust})" if state == "valid"
             else f"  content credentials: {state.upper()}"]  # fmt: skip
    lines += [f"    failure: {_shown(str(f['code']))}: {_shown(str(f['explanation']))}"
              for f in report["failures"]]  # fmt: skip
    if report["signer"]:
        signer = report["signer"]
        lines.append(f"    signer: {_shown(signer['subject'])} ({_shown(signer['alg'])})")
        lines.append(f"    issuer: {_shown(signer['issuer'])}")
    if report["claim_generator"]:
        lines.append(f"    claim generator: {_shown(report['claim_generator'])}")
    for action in report["actions"]:
        agent = action.get("softwareAgent")
        if isinstance(agent, dict):
            agent = " ".join(str(agent[k]) for k in ("name", "version") if agent.get(k))
        parts = [
            str(action.get("action")),
            str(action.get("digitalSourceType", "")).rsplit("/")[-1],
        ]
        line = "    action: " + ", ".join(_shown(p) for p in parts if p)
        line += f" by {_shown(str(agent))}" if agent else ""
        if action.get("description"):
            line += f"; prompt: {_shown(str(action['description']))}"
        lines.append(line)
    return lines


def run(args: argparse.Namespace) -> int:
    """Check each image's C2PA manifest and watermark and print its provenance chunks.

    Exit status like grep: 0 if every image is marked and no manifest is tampered or
    invalid, 1 otherwise; an unreadable image raises (exit 2) after the readable ones have
    been reported.
    """
    from openimagen.provenance import content_credentials
    from openimagen.watermark import verify_image

    trust = _read_trust(args.c2pa_trust)
    all_marked = True
    unreadable: dict[str, str] = {}
    for name in args.images:
        try:
            result = verify_image(Path(name))
            result["c2pa"] = content_credentials(Path(name).read_bytes(), trust_anchors=trust)
        except InvalidArgumentError as exc:
            unreadable[name] = str(exc.__cause__ or exc)
            continue
        except OSError as exc:  # gone between the two reads
            unreadable[name] = exc.strerror or str(exc)
            continue
        all_marked &= bool(result["marked"]) and result["c2pa"]["state"] in ("valid", "absent")
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


def _read_trust(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgumentError("--c2pa-trust", path, "a readable PEM file",
                                   f"({exc.strerror or exc})") from None  # fmt: skip
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise InvalidArgumentError("--c2pa-trust", path, "a PEM file of CA certificates")
    return data
