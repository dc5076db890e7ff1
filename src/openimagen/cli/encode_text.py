"""``openimagen encode-text``: precompute prompts' embeddings into the text-embedding cache.

The prompts file is streamed (memory does not grow with its length); a run that was
interrupted, run again, encodes only what was not stored yet.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator
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
    enc.add_argument(
        "--shard-size", type=count(1 << 20), default=4096,
        help="prompts stored per shard file (an interrupted run re-encodes at most one)",
    )  # fmt: skip
    enc.add_argument(
        "--migrate", action="store_true",
        help="first convert a version-1 cache directory in place (then prompts are optional)",
    )  # fmt: skip
    add_device_option(enc)
    add_quiet_option(enc)
    enc.set_defaults(func=run)


def iter_prompts(path: Path) -> Iterator[str]:
    """The prompts of a .txt (one a line) or .jsonl (a "prompt" field) file, read line by line.

    Blank lines are skipped.
    """
    from openimagen.config import iter_jsonl

    try:
        with open(path, encoding="utf-8") as handle:
            if path.suffix != ".jsonl":
                yield from (line.strip() for line in handle if line.strip())
                return
            for where, record in iter_jsonl(handle, str(path)):
                if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                    raise InvalidArgumentError(
                        where, record, 'an object with a string "prompt" field'
                    )
                yield record["prompt"]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError("--prompts", str(path), "a readable text or JSONL file") from exc


def count_prompts(path: Path) -> int | None:
    """Non-blank lines of ``path`` (the progress bar's total), or None if unreadable."""
    try:
        with open(path, "rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return None


def run(args: argparse.Namespace) -> int:
    from openimagen.text import TextEmbeddingCache, fill_cache, load_text_encoder
    from openimagen.text.cache import migrate_v1

    if args.migrate:
        print(f"{migrate_v1(args.cache)} entries migrated -> {args.cache}")
    if not args.text and not args.prompts:
        if args.migrate:
            return 0
        raise InvalidArgumentError("TEXT/--prompts", "nothing", "at least one prompt")
    cache = TextEmbeddingCache(args.cache)  # checks the directory before the encoder loads
    encoder = load_text_encoder(args.encoder, max_length=args.max_length, device=args.device)
    prompts: Iterator[str] = iter(args.text)
    total = len(args.text)
    if args.prompts:
        path = Path(args.prompts)
        prompts = itertools.chain(prompts, iter_prompts(path))
        lines = count_prompts(path)
        total = None if lines is None else total + lines
    seen = [0]

    def counted() -> Iterator[str]:
        for prompt in prompts:
            seen[0] += 1
            yield prompt

    added = fill_cache(encoder, counted(), cache, batch_size=args.batch_size,
                       shard_size=args.shard_size, progress=not args.quiet, total=total)  # fmt: skip
    print(f"{added} new, {seen[0] - added} already cached -> {args.cache}")
    return 0
