"""One shard: the embeddings of one batch of prompts in one safetensors file, memory-mapped.

Tensors (any safetensors reader opens the file)::

    keys        [N, 2] uint64   first 16 bytes of each row's key (rows.key_digests)
    offsets     [N + 1] int64   row i is embeddings[offsets[i] : offsets[i + 1]]
    embeddings  [T, D]  float16 or float32, the valid tokens of every row, unpadded

with metadata ``format``, ``version``, ``cache_id`` and ``dim``. A shard is written once
(temporary file, fsync, rename: :func:`openimagen.fileio.atomic_write`) and never changed.
Reading maps the file and copies out only the rows asked for, so a reader's memory does
not grow with the size of the cache; the header is checked on open (every tensor inside
the file, the file exactly covered, offsets consistent), so a truncated or garbled file is
refused, never half read.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from openimagen.fileio import atomic_write

FORMAT_NAME = "openimagen-text-cache"
FORMAT_VERSION = 2
_DTYPES = {"U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F16": np.dtype("<f2"),
           "F32": np.dtype("<f4")}  # fmt: skip
_MAX_HEADER = 100 << 20


class DamagedShardError(Exception):
    """A shard file that cannot be read as written (internal: the cache skips it)."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def write_shard(
    path: Path, cache_id: str, keys: np.ndarray, offsets: np.ndarray, embeddings: np.ndarray
) -> int:
    """Write one shard atomically; returns its size in bytes."""
    from safetensors.numpy import save

    metadata = {"format": FORMAT_NAME, "version": str(FORMAT_VERSION), "cache_id": cache_id,
                "dim": str(embeddings.shape[1])}  # fmt: skip
    data = save(
        {"keys": np.ascontiguousarray(keys, "<u8"), "offsets": np.ascontiguousarray(offsets, "<i8"),
         "embeddings": np.ascontiguousarray(embeddings)},
        metadata=metadata,
    )  # fmt: skip
    with atomic_write(path, "wb") as handle:
        handle.write(data)
    return len(data)


class Layout(NamedTuple):
    """Where a shard's tensors lie: file size and name -> (dtype, shape, begin, end) in bytes."""

    size: int
    tensors: dict[str, tuple[np.dtype, tuple[int, ...], int, int]]


class Shard:
    """A memory-mapped shard; :meth:`rows` copies rows out.

    ``layout``, when given (from an earlier open of the same file), skips reading and
    checking the header again if the file still has its size.
    """

    def __init__(self, path: Path, layout: Layout | None = None):
        self.path = path
        try:
            fd = os.open(path, os.O_RDONLY)  # os.open: a third of open()'s cost
            try:
                mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            finally:
                os.close(fd)  # the map stays valid
        except (OSError, ValueError) as exc:  # ValueError: an empty file
            raise DamagedShardError(path, f"unreadable shard: {exc}") from exc
        buffer = np.frombuffer(mapped, dtype=np.uint8)  # keeps the map alive
        if layout is None or layout.size != len(buffer):
            layout = read_layout(buffer, path)
        self.layout = layout
        views = {
            name: buffer[begin:end].view(dtype).reshape(shape)
            for name, (dtype, shape, begin, end) in layout.tensors.items()
        }
        self.keys, self.offsets, self.embeddings = (
            views["keys"], views["offsets"], views["embeddings"]
        )  # fmt: skip

    def rows(self, rows: np.ndarray, digests: np.ndarray) -> list[np.ndarray | None]:
        """Rows ``rows`` as float32 arrays [L_i, D]; None where the stored key is not ``digests``.

        A mismatch is a 64-bit hash collision in the index (or a row out of range).
        """
        rows = np.asarray(rows, dtype=np.int64)
        inside = rows < len(self.keys)
        safe = np.where(inside, rows, 0)
        match = inside & np.all(self.keys[safe] == digests, axis=1)  # [k]
        starts, stops = self.offsets[safe].tolist(), self.offsets[safe + 1].tolist()
        return [
            np.array(self.embeddings[a:b], dtype=np.float32) if ok else None
            for ok, a, b in zip(match.tolist(), starts, stops, strict=True)
        ]


def read_layout(buffer: np.ndarray, path: Path) -> Layout:
    """The checked layout of a shard file's bytes: header, byte ranges, shapes, offsets."""
    if len(buffer) < 8:
        raise DamagedShardError(path, "truncated shard (no header)")
    (length,) = struct.unpack("<Q", buffer[:8].tobytes())
    if length > min(_MAX_HEADER, len(buffer) - 8):
        raise DamagedShardError(path, "truncated shard (header longer than the file)")
    try:
        header = json.loads(buffer[8 : 8 + length].tobytes())
        metadata = header.pop("__metadata__", {})
        specs = {name: (_DTYPES[s["dtype"]], tuple(int(d) for d in s["shape"]),
                        *(8 + length + int(o) for o in s["data_offsets"]))
                 for name, s in header.items()}  # fmt: skip
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedShardError(path, f"garbled shard header: {exc!r}") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise DamagedShardError(path, f"not a {FORMAT_NAME} shard")
    if set(specs) != {"keys", "offsets", "embeddings"}:
        raise DamagedShardError(path, f"tensors {sorted(specs)}, expected keys/offsets/embeddings")
    if max(end for *_, end in specs.values()) != len(buffer):
        raise DamagedShardError(path, "truncated shard (file not fully covered by its tensors)")
    for name, (dtype, shape, begin, end) in specs.items():
        if not 8 + length <= begin <= end or end - begin != dtype.itemsize * int(np.prod(shape)):
            raise DamagedShardError(path, f"tensor {name} does not match its byte range")
    (n, two), (n1,) = specs["keys"][1], specs["offsets"][1]
    if two != 2 or n1 != n + 1 or len(specs["embeddings"][1]) != 2:
        raise DamagedShardError(path, "tensor shapes do not fit together")
    _, _, begin, end = specs["offsets"]
    offsets = buffer[begin:end].view("<i8")
    if offsets[0] != 0 or offsets[-1] != specs["embeddings"][1][0] or np.any(np.diff(offsets) < 0):
        raise DamagedShardError(path, "row offsets out of order")
    return Layout(len(buffer), specs)


class OpenShards:
    """The most recently used shards kept mapped (at most ``capacity``).

    The layouts of the last ``layouts`` shards opened are remembered (a few hundred bytes
    each, so a bounded amount whatever the size of the cache): mapping one of them again
    costs an ``mmap``, not a header parse.
    """

    def __init__(self, capacity: int, layouts: int = 4096):
        self.capacity, self.max_layouts = capacity, layouts
        self._open: OrderedDict[Path, Shard] = OrderedDict()
        self._layouts: OrderedDict[Path, Layout] = OrderedDict()  # the most recent ``layouts``

    def get(self, path: Path) -> Shard:
        shard = self._open.pop(path, None)
        if shard is None:
            shard = Shard(path, self._layouts.pop(path, None))
            self._layouts[path] = shard.layout
            while len(self._layouts) > self.max_layouts:
                self._layouts.popitem(last=False)
        self._open[path] = shard
        while len(self._open) > self.capacity:
            self._open.popitem(last=False)
        return shard

    def drop(self, path: Path) -> None:
        self._open.pop(path, None)
        self._layouts.pop(path, None)

    def clear(self) -> None:
        self._open.clear()


__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "DamagedShardError",
    "Layout",
    "OpenShards",
    "Shard",
    "read_layout",
    "write_shard",
]
