"""The cache's index on disk: one append-only journal per writer, one record per shard.

A record commits one shard: it is appended (one ``write``, then ``fsync``) only after the
shard file it names is complete, fsynced and renamed into place. Its bytes::

    "OIT2" | shard sequence number u32 | rows n u32 | shard file size u64   (little-endian)
    n x u64: the 64-bit hash of each row's key, in row order
    crc32 of all of the above, u32

A reader keeps, per journal, how many bytes it has consumed and reads only what was added
since (no rescans); the on-disk index (manifest.py) records how many bytes of each journal
its runs cover, so a process opening the cache reads only the rest. It stops at the first record that is incomplete (being written now, or
torn by a crash: it is simply not there yet, or never will be) or fails its magic or CRC
(damaged: reported once, the records before it still count). A writer never appends after
a record it could not finish: it truncates the journal back to its last good size, and a
new process always starts a new journal, so a torn tail is only ever at the end.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openimagen.fileio import fsync_directory

MAGIC = b"OIT2"
_HEADER = struct.Struct("<4sIIQ")  # magic, shard sequence number, rows, shard file size
_CRC = struct.Struct("<I")
SUFFIX = ".log"


@dataclass(frozen=True)
class Record:
    """One committed shard: its sequence number, file size and the hash of each row's key."""

    seq: int
    size: int
    hashes: np.ndarray  # [n] uint64


def encode_record(seq: int, size: int, hashes: np.ndarray) -> bytes:
    """The bytes of one journal record (see the module docstring)."""
    hashes = np.ascontiguousarray(hashes, dtype="<u8")
    body = _HEADER.pack(MAGIC, seq, len(hashes), size) + hashes.tobytes()
    return body + _CRC.pack(zlib.crc32(body))


def decode_records(data: bytes) -> tuple[list[Record], int, str | None]:
    """The complete, valid records at the start of ``data``.

    Returns (records, bytes consumed, damage): ``damage`` says why reading stopped before
    the end at a record that is whole but wrong (bad magic or CRC); an incomplete last
    record is not damage (it may still be being written) and is left unconsumed.
    """
    records: list[Record] = []
    pos = 0
    view = memoryview(data)
    while len(data) - pos >= _HEADER.size + _CRC.size:
        magic, seq, count, size = _HEADER.unpack_from(data, pos)
        if magic != MAGIC:
            return records, pos, f"no record magic at byte {pos}"
        end = pos + _HEADER.size + 8 * count
        if len(data) < end + _CRC.size:
            break  # incomplete: being appended now, or torn by a crash
        (crc,) = _CRC.unpack_from(data, end)
        if zlib.crc32(view[pos:end]) != crc:
            return records, pos, f"checksum mismatch in the record at byte {pos}"
        hashes = np.frombuffer(data, dtype="<u8", count=count, offset=pos + _HEADER.size)
        records.append(Record(seq, size, hashes.astype(np.uint64)))
        pos = end + _CRC.size
    return records, pos, None


def read_new(
    path: Path, consumed: int, max_bytes: int | None = None
) -> tuple[list[Record], int, str | None]:
    """Records of journal ``path`` after byte ``consumed``; (records, new consumed, damage).

    With ``max_bytes``, reads about that many bytes (at least one whole record), so a long
    journal is read in pieces of bounded memory: call again from the new ``consumed``
    until no record comes back.
    """
    with open(path, "rb") as handle:
        handle.seek(consumed)
        data = handle.read(-1 if max_bytes is None else max(max_bytes, _HEADER.size))
        if max_bytes is not None and len(data) >= _HEADER.size:
            magic, _, count, _ = _HEADER.unpack_from(data)
            need = _HEADER.size + 8 * count + _CRC.size  # the first record whole
            if magic == MAGIC and need > len(data):
                data += handle.read(need - len(data))
    records, used, damage = decode_records(data)
    return records, consumed + used, damage


class JournalWriter:
    """Appends records to this writer's own journal (created on the first append)."""

    def __init__(self, path: Path):
        self.path = path
        self.pid = os.getpid()  # a forked child must not append here (see TextEmbeddingCache)
        self.next_seq = 0
        self.size = 0  # bytes appended (all of them: the journal is this writer's alone)

    def append(self, record: bytes) -> None:
        """Append one record durably; on failure the journal is cut back to its last record."""
        created = not self.path.exists()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        fd = os.open(self.path, flags, 0o666)
        try:
            try:
                write_all(fd, record)
                os.fsync(fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self.size)
                raise
        finally:
            os.close(fd)
        self.size += len(record)
        self.next_seq += 1
        if created:
            fsync_directory(self.path.parent)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (one call in practice)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


__all__ = [
    "MAGIC",
    "SUFFIX",
    "JournalWriter",
    "Record",
    "decode_records",
    "encode_record",
    "read_new",
    "write_all",
]
