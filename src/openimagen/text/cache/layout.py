"""The files of a cache directory, its format marker and the version-1 layout it replaces.

::

    DIR/format.json                         {"format": "openimagen-text-cache", "version": 2}
    DIR/index/<writer>.log                  one append-only journal per writer (journal.py)
    DIR/data/<writer>/<seq>.safetensors     one shard per batch of prompts (shards.py)
    DIR/runs/                               the index on disk: manifest, sorted runs, shard
                                            table, lock (manifest.py, runs.py, compact.py)

``<writer>`` is unique per writing process and cache object (time, pid, random), so
several processes write side by side without locks; the index is the union of the
journals. ``runs/`` holds that union sorted and memory-mapped, up to the byte of each
journal its manifest names; it is derived from the journals and the shards and rebuilt
from them when it is missing or damaged (an older openimagen ignores it). Version 1 (``DIR/shards/<time>-<random>.safetensors`` + ``.json``, one tensor per
prompt, found by listing the directory) is converted by :func:`migrate_v1`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from openimagen.errors import InvalidArgumentError
from openimagen.fileio import atomic_write_json
from openimagen.text.cache.shards import FORMAT_NAME, FORMAT_VERSION

logger = logging.getLogger(__name__)

FORMAT_FILE = "format.json"
INDEX_DIR = "index"
DATA_DIR = "data"
RUNS_DIR = "runs"
V1_DIR = "shards"
V1_MIGRATING_DIR = "shards-v1-migrating"  # renamed from V1_DIR when a migration starts
V1_MIGRATED_DIR = "shards-v1-migrated"


def migrate_hint(directory: Path) -> str:
    return f"Run `openimagen encode-text --cache {directory} --migrate` once to convert it."


def check_directory(directory: Path) -> None:
    """Refuse a file, a foreign format or a version-1 cache with one clear message."""
    if directory.exists() and not directory.is_dir():
        raise InvalidArgumentError(
            "cache directory", str(directory), "a directory", "Choose a directory path."
        )
    marker = directory / FORMAT_FILE
    if marker.exists():
        try:
            found = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidArgumentError(
                "cache directory", str(directory), f"a readable {marker.name}", str(exc)
            ) from exc
        if not isinstance(found, dict) or found.get("format") != FORMAT_NAME:
            raise InvalidArgumentError(
                "cache directory", str(directory), f"a {FORMAT_NAME} directory",
                f"{marker} names another format; choose another directory.",
            )  # fmt: skip
        if found.get("version") != FORMAT_VERSION:
            raise InvalidArgumentError(
                "cache directory", str(directory), f"text cache format version {FORMAT_VERSION}",
                f"{marker} says version {found.get('version')!r}: written by another "
                "openimagen; use that version or a new directory.",
            )  # fmt: skip
        if (directory / V1_MIGRATING_DIR).is_dir():
            logger.warning(
                "text cache %s: its version-1 shards (%s/) are being migrated, or their "
                "migration was interrupted; only `openimagen encode-text --cache %s --migrate` "
                "reads them.",
                directory, V1_MIGRATING_DIR, directory,
            )  # fmt: skip
        return
    if (directory / V1_DIR).is_dir():
        raise InvalidArgumentError(
            "cache directory", str(directory),
            f"a version-{FORMAT_VERSION} text cache (this one is version 1: {V1_DIR}/*.json)",
            migrate_hint(directory),
        )  # fmt: skip


def write_marker(directory: Path) -> None:
    """Write ``format.json`` if it is missing (several writers may race: same content)."""
    if not (directory / FORMAT_FILE).exists():
        atomic_write_json(
            directory / FORMAT_FILE, {"format": FORMAT_NAME, "version": FORMAT_VERSION}
        )


def list_journals(directory: Path) -> list[Path]:
    """The journals of a cache directory (hidden temporary files excluded), sorted."""
    index = directory / INDEX_DIR
    try:
        names = os.listdir(index)
    except FileNotFoundError:
        return []
    return [index / n for n in sorted(names) if n.endswith(".log") and not n.startswith(".")]


def shard_path(directory: Path, writer: str, seq: int) -> Path:
    return directory / DATA_DIR / writer / f"{seq:08d}.safetensors"


__all__ = [
    "DATA_DIR",
    "FORMAT_FILE",
    "INDEX_DIR",
    "RUNS_DIR",
    "V1_DIR",
    "V1_MIGRATED_DIR",
    "V1_MIGRATING_DIR",
    "check_directory",
    "list_journals",
    "migrate_hint",
    "shard_path",
    "write_marker",
]
