"""Writing the index on disk: journal records -> sorted runs, merged log-structured.

:func:`update` is run by one process at a time, under the index lock (manifest.py). It
reads every journal from the byte the manifest covers, in pieces of at most ``chunk``
entries; each piece is sorted into a new run file (the newest), and while the run before
it is at most twice as long the two are merged into one (runs.py, in chunks, never more
than a few chunks in memory), so there are O(log N) runs and each entry is rewritten
O(log N) times. The shard table gains one entry per shard indexed. Only then is the new
manifest written (atomically); files no manifest names any more are deleted after it, so
a crash at any point leaves the previous manifest and its files intact, plus leftovers
the next update deletes.

A manifest that cannot be read, or names a file that is missing, truncated, or (found
while merging) fails its checksum, is set aside: the index is rebuilt from the journals
and the shards, which are the source of truth.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from pathlib import Path

import numpy as np

from openimagen.text.cache import journal, layout, runs
from openimagen.text.cache.index import MISSING, pack, search, sorted_unique
from openimagen.text.cache.manifest import (
    LOCK,
    MANIFEST,
    MAX_SHARDS,
    TABLE_SUFFIX,
    DamagedIndexError,
    IndexView,
    Manifest,
    RunInfo,
    append_table,
    index_directory,
    read_manifest,
    write_manifest,
)

logger = logging.getLogger("openimagen.text.cache")

DAMAGED_SHARD = "text cache: ignoring damaged file %s (%s); its prompts will be encoded again."
_REBUILD = "text cache %s: rebuilding the index from the journals (%s)"


def committed_shard(directory: Path, writer: str, record: journal.Record) -> Path | None:
    """The shard a journal record commits, or None (with a warning) when it is missing or
    has not the committed size (truncated after it was committed)."""
    shard = layout.shard_path(directory, writer, record.seq)
    try:
        size = shard.stat().st_size
    except OSError:
        size = -1
    if size != record.size:
        logger.warning(DAMAGED_SHARD, shard, f"size {size}, committed as {record.size}")
        return None
    return shard


def update(directory: Path, *, chunk: int) -> Manifest:
    """Index the journal records the manifest does not cover; returns the new manifest.

    The caller holds the index lock. Rebuilds from scratch if the index is damaged.
    """
    try:
        manifest = _usable_manifest(directory)
        return _Update(directory, manifest, chunk).run()
    except runs.DamagedRunError as exc:  # found while merging: every run may be suspect
        logger.warning(_REBUILD, directory, exc)
        return _Update(directory, None, chunk).run()


def _usable_manifest(directory: Path) -> Manifest | None:
    """The current manifest if it and its files pass their checks, else None (rebuild)."""
    try:
        manifest = read_manifest(directory)
        if manifest is not None:
            IndexView(directory, manifest)  # maps and checks every file it names
        return manifest
    except DamagedIndexError as exc:
        logger.warning(_REBUILD, directory, exc)
        return None


def new_name(suffix: str) -> str:
    return f"{time.time_ns():016x}-{secrets.token_hex(4)}{suffix}"


class _Update:
    """One update of the index: the state between reading the journals and the manifest."""

    def __init__(self, directory: Path, manifest: Manifest | None, chunk: int):
        self.directory, self.chunk = directory, chunk
        self.where = index_directory(directory)
        self.where.mkdir(parents=True, exist_ok=True)
        self.m = manifest if manifest is not None else Manifest()
        if self.m.shard_table is None:
            self.m.shard_table = new_name(TABLE_SUFFIX)
        self.mapped = IndexView(directory, self.m).runs  # to count the distinct hashes
        self.published = {r.name for r in self.m.runs}  # runs other processes may map
        self.writer_numbers = {name: i for i, name in enumerate(self.m.writers)}
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.pending_entries = 0
        self.table: list[tuple[int, int]] = []  # shard table entries not yet written
        self.changed = manifest is None

    def run(self) -> Manifest:
        for path in layout.list_journals(self.directory):
            self.read_journal(path)
        self.flush()
        if self.changed:
            write_manifest(self.directory, self.m)
            self.collect_garbage()
        return self.m

    def read_journal(self, path: Path) -> None:
        """Add the records of journal ``path`` past the covered byte (intact shards only)."""
        pos = self.m.covered.get(path.name, 0)
        try:
            if path.stat().st_size <= pos:
                return
        except OSError:
            return
        writer = path.name.removesuffix(journal.SUFFIX)
        while True:
            try:
                records, pos, damage = journal.read_new(path, pos, 8 * self.chunk)
            except OSError:
                break  # the store reports an unreadable journal when it reads the tail
            for record in records:
                self.add_record(writer, record)
            self.m.covered[path.name] = pos
            self.changed = True
            if not records or damage:
                break

    def add_record(self, writer: str, record: journal.Record) -> None:
        if committed_shard(self.directory, writer, record) is None:
            return
        if writer not in self.writer_numbers:
            self.writer_numbers[writer] = len(self.m.writers)
            self.m.writers.append(writer)
        number = self.m.shards + len(self.table)
        if number >= MAX_SHARDS:
            raise OSError(f"text cache {self.directory}: more than {MAX_SHARDS} shards")
        self.table.append((self.writer_numbers[writer], record.seq))
        rows = np.arange(len(record.hashes), dtype=np.int64)
        self.pending.append((record.hashes, pack(number, rows)))
        self.pending_entries += len(record.hashes)
        if self.pending_entries >= self.chunk:
            self.flush()

    def flush(self) -> None:
        """The pending entries as a new run (and its shards in the table), then merges."""
        if not self.pending:
            return
        hashes, locations = sorted_unique(
            np.concatenate([h for h, _ in self.pending]),
            np.concatenate([loc for _, loc in self.pending]),
        )
        self.pending, self.pending_entries = [], 0
        append_table(self.where / self.m.shard_table, self.m.shards, self.table)
        self.m.shards += len(self.table)
        self.table = []
        self.m.entries += int(np.count_nonzero(search(self.mapped, hashes) == MISSING))
        name = new_name(runs.SUFFIX)
        runs.write_run(self.where / name, len(hashes), iter([(hashes, locations)]))
        self.add_run(RunInfo(name, len(hashes), len(hashes)))
        while len(self.m.runs) > 1 and self.m.runs[-2].count <= 2 * self.m.runs[-1].count:
            self.merge_last_two()

    def add_run(self, info: RunInfo) -> None:
        self.m.runs.append(info)
        self.mapped.append(runs.map_run(self.where / info.name, info.count))

    def merge_last_two(self) -> None:
        older, newer = self.m.runs[-2], self.m.runs[-1]
        name, capacity = new_name(runs.SUFFIX), older.count + newer.count
        merged = runs.merge_chunks(
            runs.read_chunks(self.where / older.name, runs.MERGE_CHUNK),
            runs.read_chunks(self.where / newer.name, runs.MERGE_CHUNK),
        )
        count = runs.write_run(self.where / name, capacity, merged)
        del self.m.runs[-2:], self.mapped[-2:]
        self.add_run(RunInfo(name, count, capacity))
        for info in (older, newer):
            if info.name not in self.published:  # no reader has seen it: delete it now
                _remove(self.where / info.name)

    def collect_garbage(self) -> None:
        """Delete what the new manifest does not name (crash leftovers, replaced runs)."""
        keep = {MANIFEST, LOCK, self.m.shard_table, *(r.name for r in self.m.runs)}
        for name in os.listdir(self.where):
            if name not in keep:
                _remove(self.where / name)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):  # gone, or (not POSIX) still mapped: next time
        os.unlink(path)


__all__ = ["DAMAGED_SHARD", "committed_shard", "new_name", "update"]
