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
import struct
from collections import OrderedDict
from pathlib import Path

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


class Shard:
    """A memory-mapped shard; :meth:`rows` copies rows out."""

    def __init__(self, path: Path):
        self.path = path
        try:
            # a plain ndarray over the map: slicing a np.memmap subclass costs more
            self._map = np.memmap(path, dtype=np.uint8, mode="r").view(np.ndarray)
        except (OSError, ValueError) as exc:  # ValueError: an empty file
            raise DamagedShardError(path, f"unreadable shard: {exc}") from exc
        tensors, self.metadata = _parse_header(self._map, path)
        self.keys, self.offsets, self.embeddings = (
            tensors["keys"], tensors["offsets"], tensors["embeddings"]
        )  # fmt: skip
        n, total = len(self.keys), len(self.embeddings)
        if self.keys.shape != (n, 2) or self.offsets.shape != (n + 1,) or self.embeddings.ndim != 2:
            raise DamagedShardError(path, "tensor shapes do not fit together")
        offsets = np.asarray(self.offsets)
        if offsets[0] != 0 or offsets[-1] != total or np.any(np.diff(offsets) < 0):
            raise DamagedShardError(path, "row offsets out of order")

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


def _parse_header(buffer: np.ndarray, path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The tensors (views of ``buffer``) and metadata of a safetensors file, all checked."""
    if len(buffer) < 8:
        raise DamagedShardError(path, "truncated shard (no header)")
    (length,) = struct.unpack("<Q", buffer[:8].tobytes())
    if length > min(_MAX_HEADER, len(buffer) - 8):
        raise DamagedShardError(path, "truncated shard (header longer than the file)")
    try:
        header = json.loads(buffer[8 : 8 + length].tobytes())
        metadata = header.pop("__metadata__", {})
        specs = {name: (_DTYPES[s["dtype"]], [int(d) for d in s["shape"]],
                        [int(o) for o in s["data_offsets"]])
                 for name, s in header.items()}  # fmt: skip
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedShardError(path, f"garbled shard header: {exc!r}") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise DamagedShardError(path, f"not a {FORMAT_NAME} shard")
    if set(specs) != {"keys", "offsets", "embeddings"}:
        raise DamagedShardError(path, f"tensors {sorted(specs)}, expected keys/offsets/embeddings")
    data = buffer[8 + length :]
    ends = [end for _, _, (_, end) in specs.values()]
    if max(ends) != len(data):
        raise DamagedShardError(path, "truncated shard (file not fully covered by its tensors)")
    tensors = {}
    for name, (dtype, shape, (begin, end)) in specs.items():
        if not 0 <= begin <= end or end - begin != dtype.itemsize * int(np.prod(shape)):
            raise DamagedShardError(path, f"tensor {name} does not match its byte range")
        tensors[name] = data[begin:end].view(dtype).reshape(shape)
    return tensors, metadata


class OpenShards:
    """The most recently used shards kept mapped (at most ``capacity``)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._open: OrderedDict[Path, Shard] = OrderedDict()

    def get(self, path: Path) -> Shard:
        shard = self._open.pop(path, None) or Shard(path)
        self._open[path] = shard
        while len(self._open) > self.capacity:
            self._open.popitem(last=False)
        return shard

    def drop(self, path: Path) -> None:
        self._open.pop(path, None)

    def clear(self) -> None:
        self._open.clear()


__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "DamagedShardError",
    "OpenShards",
    "Shard",
    "write_shard",
]
