"""The on-disk index's manifest, its lock, its shard table and a mapped view of it.

::

    DIR/runs/manifest.json     which files make up the index and what it covers (below)
    DIR/runs/<name>.run        sorted runs (runs.py), oldest first in the manifest
    DIR/runs/<name>.shards     the shard table: shard number -> (writer number, seq), u32 x 2
    DIR/runs/lock              held (``fcntl.flock``) by the one process changing the index

``manifest.json``: ``writers`` (journal names; a location's shard number leads through the
shard table to ``writers[w]`` and ``seq``, hence to ``data/<writer>/<seq>.safetensors``),
``covered`` (journal name -> bytes of it whose records are in the runs; the rest of each
journal is read at open, the tail), ``shard_table`` and ``shards`` (its file and how many of
its entries count), ``runs`` (name, count, capacity), ``entries`` (distinct hashes in the
runs). It is replaced atomically, only under the lock, after every file it names is
complete and fsynced; run files are never changed, the shard table only grows past
``shards``, so a reader that mapped one manifest's files keeps a consistent view while
another process writes the next (on POSIX a deleted file stays readable while mapped).

Everything here derives from the journals and the shards: when the manifest or a file it
names is missing or fails its checks, the index is rebuilt from them (compact.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from openimagen.fileio import atomic_write_json
from openimagen.text.cache import layout, runs
from openimagen.text.cache.index import MISSING, search

try:
    import fcntl
except ImportError:  # not POSIX: no shared on-disk index, journals only (see store.py)
    fcntl = None

logger = logging.getLogger("openimagen.text.cache")

INDEX_FORMAT, INDEX_VERSION = "openimagen-text-cache-index", 1
MANIFEST = "manifest.json"
LOCK = "lock"
TABLE_SUFFIX = ".shards"
_TABLE_DTYPE = np.dtype([("writer", "<u4"), ("seq", "<u4")])
MAX_SHARDS = 1 << 30  # persisted shard numbers stay below the store's tail numbers
_PATHS_KEPT = 1 << 14


class DamagedIndexError(Exception):
    """The manifest or a file it names cannot be used (internal: the index is rebuilt)."""


@dataclass(frozen=True)
class RunInfo:
    name: str
    count: int
    capacity: int


@dataclass
class Manifest:
    """What the on-disk index holds (see the module docstring)."""

    writers: list[str] = field(default_factory=list)
    covered: dict[str, int] = field(default_factory=dict)
    shard_table: str | None = None
    shards: int = 0
    runs: list[RunInfo] = field(default_factory=list)
    entries: int = 0

    def to_json(self) -> dict:
        return {"format": INDEX_FORMAT, "version": INDEX_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data) -> Manifest:
        if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
            raise DamagedIndexError(f"not an {INDEX_FORMAT} manifest")
        if data.get("version") != INDEX_VERSION:
            raise DamagedIndexError(f"index version {data.get('version')!r}")
        try:
            return cls(
                writers=[str(w) for w in data["writers"]],
                covered={str(k): int(v) for k, v in data["covered"].items()},
                shard_table=None if data["shard_table"] is None else str(data["shard_table"]),
                shards=int(data["shards"]),
                runs=[
                    RunInfo(str(r["name"]), int(r["count"]), int(r["capacity"]))
                    for r in data["runs"]
                ],
                entries=int(data["entries"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DamagedIndexError(f"garbled manifest: {exc!r}") from exc


def index_directory(directory: Path) -> Path:
    return directory / layout.RUNS_DIR


def manifest_stamp(directory: Path) -> tuple[int, int, int] | None:
    """(inode, mtime, size) of the manifest, which changes whenever it is replaced."""
    try:
        st = os.stat(index_directory(directory) / MANIFEST)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def read_manifest(directory: Path) -> Manifest | None:
    """The manifest, or None if there is none; raises :class:`DamagedIndexError`."""
    path = index_directory(directory) / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedIndexError(f"{path}: {exc}") from exc
    try:
        return Manifest.from_json(json.loads(text))
    except json.JSONDecodeError as exc:
        raise DamagedIndexError(f"{path}: {exc}") from exc


def write_manifest(directory: Path, manifest: Manifest) -> None:
    atomic_write_json(index_directory(directory) / MANIFEST, manifest.to_json())


@contextlib.contextmanager
def index_lock(directory: Path, *, blocking: bool) -> Iterator[bool]:
    """Hold the index lock; yields False (and holds nothing) if not ``blocking`` and busy."""
    if fcntl is None:
        yield False
        return
    where = index_directory(directory)
    where.mkdir(parents=True, exist_ok=True)
    fd = os.open(where / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def map_table(path: Path, count: int) -> np.ndarray:
    """The first ``count`` entries of a shard table, mapped: [count] (writer, seq)."""
    if count == 0:
        return np.empty(0, dtype=_TABLE_DTYPE)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < count * _TABLE_DTYPE.itemsize:
                raise DamagedIndexError(f"{path}: {size} bytes, {count} shards expected")
            # only the entries that count: what follows may be cut off by the next update
            length = count * _TABLE_DTYPE.itemsize
            mapped = mmap.mmap(handle.fileno(), length, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise DamagedIndexError(f"{path}: {exc}") from exc
    return np.frombuffer(mapped, dtype=_TABLE_DTYPE, count=count)


def append_table(path: Path, start: int, entries: list[tuple[int, int]]) -> None:
    """Write ``entries`` at entry ``start`` of the shard table (cutting off what follows)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        os.ftruncate(fd, start * _TABLE_DTYPE.itemsize)  # a crashed compaction's leftovers
        data = np.array(entries, dtype=_TABLE_DTYPE).tobytes()
        view, offset = memoryview(data), start * _TABLE_DTYPE.itemsize
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
        os.fsync(fd)
    finally:
        os.close(fd)


class IndexView:
    """One manifest's runs and shard table, mapped read-only; lookups search the runs."""

    def __init__(self, directory: Path, manifest: Manifest):
        self.directory, self.manifest = directory, manifest
        where = index_directory(directory)
        try:
            self.runs = [runs.map_run(where / r.name, r.count) for r in manifest.runs]
        except runs.DamagedRunError as exc:
            raise DamagedIndexError(str(exc)) from exc
        table = where / manifest.shard_table if manifest.shard_table else None
        if table is None and manifest.shards:
            raise DamagedIndexError("shards listed without a shard table")
        self.table = map_table(table, manifest.shards) if table else np.empty(0, dtype=_TABLE_DTYPE)
        self._paths: dict[int, Path] = {}  # shard number -> file, the most recent ones

    @classmethod
    def empty(cls, directory: Path) -> IndexView:
        return cls(directory, Manifest())

    def __len__(self) -> int:
        return self.manifest.entries

    @property
    def nbytes(self) -> int:
        """Bytes of the mapped files (page cache: the kernel may drop them at any time)."""
        return sum(h.nbytes + loc.nbytes for h, loc in self.runs) + self.table.nbytes

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """The packed location of each hash, or ``MISSING``: [N] int64."""
        if not self.runs:
            return np.full(len(hashes), MISSING, dtype=np.int64)
        return search(self.runs, hashes)

    def shard_path(self, number: int) -> Path:
        path = self._paths.get(number)
        if path is None:
            entry = self.table[number]
            name = self.manifest.writers[int(entry["writer"])]
            path = layout.shard_path(self.directory, name, int(entry["seq"]))
            if len(self._paths) >= _PATHS_KEPT:
                self._paths.clear()  # a bounded memo: paths are cheap to make again
            self._paths[number] = path
        return path


__all__ = [
    "LOCK",
    "MANIFEST",
    "MAX_SHARDS",
    "TABLE_SUFFIX",
    "DamagedIndexError",
    "IndexView",
    "Manifest",
    "RunInfo",
    "append_table",
    "index_directory",
    "index_lock",
    "manifest_stamp",
    "map_table",
    "read_manifest",
    "write_manifest",
]
