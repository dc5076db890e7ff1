"""``openimagen encode-text``: precompute prompts' embeddings into the text-embedding cache."""

from __future__ import annotations

import argparse
from pathlib import Path

from openimagen.cli.options import add_command, add_device_option, add_quiet_option, count
from openimagen.errors import InvalidArgumentError


def register(subparsers: argparse._SubParsersAction) -> None:
    enc = add_command(subparsers, "encode-text", "fill the text-embedding cache")
    enc.add_argument("text", nargs="*", metavar="TEXT", help="prompts to encode")
    enc.add_argument(
        "--prompts", metavar="FILE", default=None,
        help="a .txt file (one prompt a line) or .jsonl file with a 'prompt' field",
    )  # fmt: skip
    enc.add_argument("--cache", metavar="DIR", required=True, help="cache directory")
    enc.add_argument(
        "--encoder", default="minilm",
        help="text encoder: 'minilm' (bundled), a local directory or a hub id",
    )  # fmt: skip
    enc.add_argument(
        "--max-length", type=count(4096), default=64,
        help="tokens kept per prompt; longer prompts are truncated",
    )  # fmt: skip
    enc.add_argument(
        "--batch-size", type=count(4096), default=64, help="prompts encoded per forward pass"
    )
    add_device_option(enc)
    add_quiet_option(enc)
    enc.set_defaults(func=run)


def read_prompts(path: Path) -> list[str]:
    """The prompts of a .txt (one a line) or .jsonl (a "prompt" field) file; blank lines skipped."""
    from openimagen.config import iter_jsonl

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArgumentError("--prompts", str(path), "a readable text or JSONL file") from exc
    if path.suffix != ".jsonl":
        return [line.strip() for line in text.splitlines() if line.strip()]
    prompts = []
    for where, record in iter_jsonl(text, str(path)):
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
            raise InvalidArgumentError(where, record, 'an object with a string "prompt" field')
        prompts.append(record["prompt"])
    return prompts


def run(args: argparse.Namespace) -> int:
    from openimagen.text import TextEmbeddingCache, fill_cache, load_text_encoder

    prompts = list(args.text)
    if args.prompts:
        prompts += read_prompts(Path(args.prompts))
    if not prompts:
        raise InvalidArgumentError("TEXT/--prompts", "nothing", "at least one prompt")
    encoder = load_text_encoder(args.encoder, max_length=args.max_length, device=args.device)
    cache = TextEmbeddingCache(args.cache)
    added = fill_cache(encoder, prompts, cache, batch_size=args.batch_size, progress=not args.quiet)
    print(f"{added} new, {len(set(prompts)) - added} already cached -> {args.cache}")
    return 0
