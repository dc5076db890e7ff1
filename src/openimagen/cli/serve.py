"""``openimagen serve``: a model over an OpenAI-compatible HTTP API with a web page.

``python -m openimagen.serve`` runs this command. FastAPI, uvicorn and torch load only when
it runs; the defaults shown in ``--help`` come from :class:`openimagen.serve.ServeSettings`.
"""

from __future__ import annotations

import argparse

from openimagen.cascade.sampling import LIMITS
from openimagen.cli.options import (
    MAX_IMAGES,
    add_c2pa_options,
    add_command,
    add_device_option,
    add_memory_options,
    add_model_option,
    add_server_options,
    count,
    load_options,
)
from openimagen.serve.server import API_KEY_ENV, DEFAULT_PORT
from openimagen.serve.settings import ServeSettings

_DEFAULTS = ServeSettings()


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = add_command(
        subparsers, "serve", "serve a model over an OpenAI-compatible HTTP API with a web page",
        description="Serve a model: POST /v1/images/generations (OpenAI Images API), "
        "GET /v1/models, GET /healthz and a web page at /. Set the environment variable "
        f"{API_KEY_ENV} to require 'Authorization: Bearer <key>'. See docs/serving.md.",
    )  # fmt: skip
    add_arguments(serve)
    serve.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``openimagen serve``."""
    add_model_option(parser)
    add_server_options(parser, DEFAULT_PORT)
    parser.add_argument(
        "--policy", metavar="FILE", default=None,
        help="prompt block list (UTF-8, one word or phrase per line, '#' comments) "
        "(default: no policy)",
    )  # fmt: skip
    add_device_option(parser)
    add_memory_options(parser)
    parser.add_argument(
        "--api-key-env", metavar="NAME", default=API_KEY_ENV,
        help="environment variable holding the API key; unset or empty = no key required, "
        "only whitespace is refused",
    )  # fmt: skip
    parser.add_argument(
        "--max-queue", metavar="N", type=count(10000), default=_DEFAULTS.max_queue,
        help="requests waiting for the model; one more gets HTTP 429",
    )  # fmt: skip
    parser.add_argument(
        "--max-n", metavar="N", type=count(MAX_IMAGES), default=_DEFAULTS.max_n,
        help="images per request",
    )  # fmt: skip
    parser.add_argument(
        "--max-steps", metavar="N", type=count(int(LIMITS["steps"].high)),
        default=_DEFAULTS.max_steps, help="sampling steps per stage a request may ask for",
    )  # fmt: skip
    parser.add_argument(
        "--max-batch-images", metavar="N", type=count(1024), default=_DEFAULTS.max_batch_images,
        help="images sampled together in one batch (at least --max-n)",
    )  # fmt: skip
    add_c2pa_options(parser)
    parser.add_argument(
        "--public-url", metavar="URL", default=None,
        help="base of image URLs in 'url' responses, behind a proxy "
        "(default: the URL the request came to)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted (Ctrl-C stops it cleanly, exit status 0)."""
    from openimagen.serve.server import run_server

    settings = ServeSettings(
        max_queue=args.max_queue,
        max_n=args.max_n,
        max_steps=args.max_steps,
        max_batch_images=args.max_batch_images,
        public_url=args.public_url,
        c2pa_cert=args.c2pa_cert,
        c2pa_key=args.c2pa_key,
        c2pa_tsa_url=args.c2pa_tsa_url,
        c2pa_include_prompt=args.c2pa_include_prompt,
    )
    run_server(
        args.model,
        args.host,
        args.port,
        api_key_env=args.api_key_env or None,
        load_options=load_options(args),
        policy_file=args.policy,
        device=None if args.device == "auto" else args.device,
        settings=settings,
        log_level=args.log_level,
    )
    return 0
