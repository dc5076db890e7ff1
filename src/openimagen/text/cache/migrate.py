"""Convert a version-1 cache directory (one shard file per put, listed on every miss).

Version 1 kept ``DIR/shards/<time>-<random>.json`` (format, cache_id, key -> prompt) beside
``.safetensors`` files holding one tensor [L_i, D] per prompt, named by its key. Its keys
are the same sha256 as version 2's, so every entry is copied as is, in batches of
``shard_size``; entries already present are skipped, so an interrupted migration is simply
run again. ``shards/`` is renamed ``shards-v1-migrating/`` as it starts and
``shards-v1-migrated/`` when it is done (delete that then).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from openimagen.text.cache import layout
from openimagen.text.cache.rows import cache_key
from openimagen.text.cache.store import TextEmbeddingCache

logger = logging.getLogger("openimagen.text.cache")
_V1_FORMAT, _V1_VERSION = "openimagen-text-cache", 1


def migrate_v1(directory: str | os.PathLike, *, shard_size: int = 4096) -> int:
    """Convert the version-1 cache in ``directory`` in place; returns the entries copied.

    A directory with nothing of version 1 is left alone (returns 0).
    """
    directory = Path(directory)
    old = directory / layout.V1_MIGRATING_DIR
    if (directory / layout.V1_DIR).is_dir():
        os.replace(directory / layout.V1_DIR, old)  # a rerun after an interruption finds it
    if not old.is_dir():
        return 0
    cache = TextEmbeddingCache(directory)  # opens as version 2 from here on
    copied = 0
    pending: dict[str, tuple[list[str], list[torch.Tensor]]] = {}  # cache_id -> batch
    for index_path in sorted(old.glob("*.json")):
        for cache_id, text, row in _read_v1(index_path):
            texts, rows = pending.setdefault(cache_id, ([], []))
            texts.append(text)
            rows.append(row)
            if len(texts) >= shard_size:
                copied += _store_new(cache, cache_id, *pending.pop(cache_id))
    for cache_id, (texts, rows) in pending.items():
        copied += _store_new(cache, cache_id, texts, rows)
    os.replace(old, directory / layout.V1_MIGRATED_DIR)
    logger.info("text cache %s: %d entries migrated from version 1", directory, copied)
    return copied


def _store_new(cache: TextEmbeddingCache, cache_id: str, texts: list[str], rows: list) -> int:
    present = cache.contains(cache_id, texts)
    keep = [i for i, hit in enumerate(present) if not hit]
    if keep:
        cache.put_rows(cache_id, [texts[i] for i in keep], [rows[i] for i in keep])
    return len(keep)


def _read_v1(index_path: Path):
    """(cache_id, prompt, row [L_i, D]) of one version-1 index; a damaged one is skipped."""
    from safetensors import SafetensorError, safe_open

    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if index.get("format") != _V1_FORMAT or index.get("version") != _V1_VERSION:
            raise ValueError(f"not a version-{_V1_VERSION} {_V1_FORMAT} index")
        cache_id, entries = index["cache_id"], index["entries"]
        shard = index_path.parent / Path(index["shard"]).name
        with safe_open(shard, framework="pt") as handle:
            names = set(handle.keys())
            found = {k: handle.get_tensor(k) for k in entries if k in names}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SafetensorError) as exc:
        logger.warning("text cache: skipping damaged version-1 file %s (%s)", index_path, exc)
        return
    for key, text in entries.items():
        row = found.get(key)
        if row is None or row.ndim != 2 or cache_key(cache_id, text) != key:
            logger.warning("text cache: skipping a damaged entry of %s", index_path)
            continue
        yield cache_id, text, row.clone()


__all__ = ["migrate_v1"]
