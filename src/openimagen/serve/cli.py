"""``openimagen serve`` and ``openimagen verify``, registered into the main CLI.

``register(subparsers)`` adds both subcommands; each handler takes the parsed arguments and
returns the exit status, raising :class:`openimagen.errors.OpenImagenError` for bad input
(the main CLI prints it as one line and exits 2). This module imports only the standard
library and light openimagen modules; FastAPI, uvicorn and torch load when a command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from openimagen.argtypes import ranged
from openimagen.errors import InvalidArgumentError
from openimagen.serve.server import API_KEY_ENV, DEFAULT_HOST, DEFAULT_PORT
from openimagen.serve.settings import ServeSettings

_DEFAULTS = ServeSettings()


# -- serve -------------------------------------------------------------------------------------
def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``openimagen serve`` (also used by ``python -m openimagen.serve``)."""
    parser.add_argument(
        "--model", metavar="DIR", default=None, help="model directory; None = the bundled model"
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to bind; the default is reachable from this machine only",
    )
    parser.add_argument(
        "--port",
        metavar="N",
        type=ranged(int, 0, 65535, "an integer in [0, 65535]"),
        default=DEFAULT_PORT,
        help="TCP port; 0 = any free one",
    )
    parser.add_argument(
        "--policy",
        metavar="FILE",
        default=None,
        help="prompt block list (UTF-8, one word or phrase per line, '#' comments); "
        "None = no policy",
    )
    parser.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument(
        "--api-key-env",
        metavar="NAME",
        default=API_KEY_ENV,
        help="environment variable holding the API key; unset or empty = no key required, "
        "only whitespace is refused",
    )
    parser.add_argument(
        "--max-queue",
        metavar="N",
        type=ranged(int, 1, 10000, "an integer in [1, 10000]"),
        default=_DEFAULTS.max_queue,
        help="requests waiting for the model; one more gets HTTP 429",
    )
    parser.add_argument(
        "--max-n",
        metavar="N",
        type=ranged(int, 1, 64, "an integer in [1, 64]"),
        default=_DEFAULTS.max_n,
        help="images per request",
    )
    parser.add_argument(
        "--max-steps",
        metavar="N",
        type=ranged(int, 1, 10000, "an integer in [1, 10000]"),
        default=_DEFAULTS.max_steps,
        help="sampling steps per stage a request may ask for",
    )
    parser.add_argument(
        "--max-batch-images",
        metavar="N",
        type=ranged(int, 1, 1024, "an integer in [1, 1024]"),
        default=_DEFAULTS.max_batch_images,
        help="images sampled together in one batch (at least --max-n)",
    )
    parser.add_argument(
        "--public-url",
        metavar="URL",
        default=None,
        help="base of image URLs in 'url' responses (behind a proxy); None = the URL the "
        "request came to",
    )
    parser.add_argument(
        "--log-level",
        choices=["critical", "error", "warning", "info", "debug"],
        default="info",
        help="server log level",
    )


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until interrupted (Ctrl-C stops it cleanly, exit status 0)."""
    from openimagen.serve.server import run_server

    settings = ServeSettings(
        max_queue=args.max_queue,
        max_n=args.max_n,
        max_steps=args.max_steps,
        max_batch_images=args.max_batch_images,
        public_url=args.public_url,
    )
    run_server(
        args.model,
        args.host,
        args.port,
        api_key_env=args.api_key_env or None,
        policy_file=args.policy,
        device=None if args.device == "auto" else args.device,
        settings=settings,
        log_level=args.log_level,
    )
    return 0


# -- verify ------------------------------------------------------------------------------------
def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to check")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per image instead of text"
    )


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


def cmd_verify(args: argparse.Namespace) -> int:
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


# -- registration ------------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve`` and ``verify`` to the main CLI's subparsers (``func`` set on each)."""
    formatter = argparse.ArgumentDefaultsHelpFormatter
    serve = subparsers.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible HTTP API with a web page",
        description="Serve a model: POST /v1/images/generations (OpenAI Images API), "
        "GET /v1/models, GET /healthz and a web page at /. Set the environment variable "
        f"{API_KEY_ENV} to require 'Authorization: Bearer <key>'. See docs/serving.md.",
        formatter_class=formatter,
    )
    add_serve_arguments(serve)
    serve.set_defaults(func=cmd_serve)

    verify = subparsers.add_parser(
        "verify",
        help="detect the invisible watermark and show provenance chunks",
        description="Check images for openimagen's invisible watermark and print their "
        "provenance text chunks. Exit status: 0 every image marked, 1 one is not, "
        "2 an image could not be read.",
        formatter_class=formatter,
    )
    add_verify_arguments(verify)
    verify.set_defaults(func=cmd_verify)


__all__ = ["add_serve_arguments", "add_verify_arguments", "cmd_serve", "cmd_verify", "register"]
