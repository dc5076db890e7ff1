"""Sorted runs of the index on disk: hash -> location, memory-mapped for lookups.

A run file holds ``count`` distinct 64-bit key hashes in ascending order and their
locations (``index.pack``: shard number, row), in two arrays so that a lookup is one
``searchsorted`` over a contiguous mapped array (page cache, not the process's own
memory)::

    header (64 bytes): "OITRUN01" | count u64 | capacity u64 | crc32 of the hashes u32 |
                       crc32 of the locations u32 | crc32 of the header before it u32
    hashes     capacity x u64 at byte 64            (the first ``count`` are used)
    locations  capacity x i64 at byte 64 + 8 * capacity

``capacity`` is fixed when a run is started: a merge knows its output's length only at
the end (where both runs hold a hash, it is kept once), so it reserves the sum of the two
and leaves the rest unused. A run is written once, through a temporary file that is
fsynced and renamed (:func:`openimagen.fileio.atomic_write`), and never changed. Opening
checks the header and the file size; the checksums of the arrays are checked whenever a
run is read whole (a merge), and a run that fails is rebuilt from the journals
(compact.py). A run that is damaged in a way these checks miss can only cause misses,
never another prompt's embedding: every row read is checked against the 16 key bytes its
shard stores.

Merging reads both runs in chunks of ``chunk`` entries with ``pread`` (no maps, a fixed
amount of memory whatever their length) and writes the merged chunks as it goes.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from openimagen.fileio import atomic_write
from openimagen.text.cache.index import sorted_unique

MAGIC = b"OITRUN01"
_HEADER = struct.Struct("<8sQQII")  # magic, count, capacity, crc of hashes, crc of locations
_HEADER_CRC = struct.Struct("<I")
HEADER_SIZE = 64
SUFFIX = ".run"
MERGE_CHUNK = 1 << 15  # entries read from each run at a time by a merge (512 KiB each)


class DamagedRunError(Exception):
    """A run file that is missing, truncated or fails its checks (internal: rebuilt)."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def file_size(capacity: int) -> int:
    return HEADER_SIZE + 16 * capacity


class RunWriter:
    """Writes one run in ascending chunks into an open file (see :func:`write_run`)."""

    def __init__(self, fd: int, capacity: int):
        self.fd, self.capacity, self.count = fd, capacity, 0
        self._crc_h = self._crc_loc = 0
        self._last: int | None = None
        os.ftruncate(fd, file_size(capacity))

    def append(self, hashes: np.ndarray, locations: np.ndarray) -> None:
        """Add entries whose hashes are ascending and above every hash added before."""
        if len(hashes) == 0:
            return
        assert self.count + len(hashes) <= self.capacity
        assert self._last is None or int(hashes[0]) > self._last
        h = np.ascontiguousarray(hashes, dtype="<u8").tobytes()
        loc = np.ascontiguousarray(locations, dtype="<i8").tobytes()
        _pwrite_all(self.fd, h, HEADER_SIZE + 8 * self.count)
        _pwrite_all(self.fd, loc, HEADER_SIZE + 8 * (self.capacity + self.count))
        self._crc_h, self._crc_loc = zlib.crc32(h, self._crc_h), zlib.crc32(loc, self._crc_loc)
        self.count += len(hashes)
        self._last = int(hashes[-1])

    def finish(self) -> None:
        fields = _HEADER.pack(MAGIC, self.count, self.capacity, self._crc_h, self._crc_loc)
        header = fields + _HEADER_CRC.pack(zlib.crc32(fields))
        _pwrite_all(self.fd, header.ljust(HEADER_SIZE, b"\0"), 0)


def write_run(path: Path, capacity: int, chunks: Iterator[tuple[np.ndarray, np.ndarray]]) -> int:
    """Write the run ``path`` atomically from ascending chunks; returns its entry count."""
    with atomic_write(path, "wb") as handle:
        writer = RunWriter(handle.fileno(), capacity)
        for hashes, locations in chunks:
            writer.append(hashes, locations)
        writer.finish()
    return writer.count


def read_header(path: Path, handle=None) -> tuple[int, int, int, int]:
    """(count, capacity, crc of hashes, crc of locations) of run ``path``, checked."""
    try:
        if handle is None:
            with open(path, "rb") as own:
                return read_header(path, own)
        size = os.fstat(handle.fileno()).st_size
        raw = os.pread(handle.fileno(), HEADER_SIZE, 0)
    except OSError as exc:
        raise DamagedRunError(path, f"unreadable run: {exc}") from exc
    if len(raw) < HEADER_SIZE:
        raise DamagedRunError(path, "truncated run (no header)")
    fields = raw[: _HEADER.size]
    (crc,) = _HEADER_CRC.unpack_from(raw, _HEADER.size)
    magic, count, capacity, crc_h, crc_loc = _HEADER.unpack(fields)
    if magic != MAGIC or zlib.crc32(fields) != crc:
        raise DamagedRunError(path, "garbled run header")
    if count > capacity or size != file_size(capacity):
        raise DamagedRunError(path, f"size {size}, header says {file_size(capacity)} bytes")
    return count, capacity, crc_h, crc_loc


def map_run(path: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The (hashes, locations) of run ``path``, memory-mapped read-only; ``count`` checked."""
    try:
        with open(path, "rb") as handle:
            found, capacity, _, _ = read_header(path, handle)
            if found != count:
                raise DamagedRunError(path, f"{found} entries, the manifest says {count}")
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError as exc:
        raise DamagedRunError(path, "missing run") from exc
    except OSError as exc:
        raise DamagedRunError(path, f"unreadable run: {exc}") from exc
    hashes = np.frombuffer(mapped, dtype="<u8", count=count, offset=HEADER_SIZE)
    locations = np.frombuffer(mapped, dtype="<i8", count=count, offset=HEADER_SIZE + 8 * capacity)
    return hashes, locations


def read_chunks(path: Path, chunk: int = MERGE_CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The entries of run ``path`` in ascending chunks, read (not mapped); checksums checked.

    Raises :class:`DamagedRunError` after the last chunk if a checksum does not match.
    """
    try:
        with open(path, "rb") as handle:
            count, capacity, crc_h, crc_loc = read_header(path, handle)
            fd, got_h, got_loc = handle.fileno(), 0, 0
            for start in range(0, count, chunk):
                n = min(chunk, count - start)
                h = _pread_exact(fd, 8 * n, HEADER_SIZE + 8 * start, path)
                loc = _pread_exact(fd, 8 * n, HEADER_SIZE + 8 * (capacity + start), path)
                got_h, got_loc = zlib.crc32(h, got_h), zlib.crc32(loc, got_loc)
                yield np.frombuffer(h, "<u8"), np.frombuffer(loc, "<i8")
    except FileNotFoundError as exc:
        raise DamagedRunError(path, "missing run") from exc
    if (got_h, got_loc) != (crc_h, crc_loc):
        raise DamagedRunError(path, "checksum mismatch")


def merge_chunks(
    older: Iterator[tuple[np.ndarray, np.ndarray]], newer: Iterator[tuple[np.ndarray, np.ndarray]]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Two ascending runs (as chunk iterators) as one; where both hold a hash, ``newer`` wins.

    Holds at most one chunk of each at a time. Each step emits everything up to the smaller
    of the two chunks' last hashes; the chunk that ends there is used up, so it always
    progresses. Hashes are distinct within a run, so a hash equal to that bound cannot lie
    in a later chunk of the other run.
    """
    empty = (np.empty(0, np.uint64), np.empty(0, np.int64))
    a, b = next(older, None), next(newer, None)
    while a is not None or b is not None:
        a_h, a_loc = a if a is not None else empty
        b_h, b_loc = b if b is not None else empty
        if a is not None and b is not None:
            bound = min(a_h[-1], b_h[-1])
            na, nb = np.searchsorted(a_h, bound, "right"), np.searchsorted(b_h, bound, "right")
        else:
            na, nb = len(a_h), len(b_h)
        h = np.concatenate([a_h[:na], b_h[:nb]])  # newer last: sorted_unique keeps it
        loc = np.concatenate([a_loc[:na], b_loc[:nb]])
        if len(h):
            yield sorted_unique(h, loc)
        a = _rest(a, na, older)
        b = _rest(b, nb, newer)


def _rest(current, used: int, source):
    """What is left of chunk ``current`` after ``used`` entries, or the next chunk."""
    if current is None:
        return None
    if used < len(current[0]):
        return current[0][used:], current[1][used:]
    return next(source, None)


def _pread_exact(fd: int, size: int, offset: int, path: Path) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise DamagedRunError(path, "truncated run")
    return data


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "MERGE_CHUNK",
    "SUFFIX",
    "DamagedRunError",
    "RunWriter",
    "file_size",
    "map_run",
    "merge_chunks",
    "read_chunks",
    "read_header",
    "write_run",
]
