"""``TextEmbeddingCache``: append-only shards, per-writer journals, an in-memory hash index.

A put writes one shard (the batch's rows) and then appends one record to this writer's
journal; the record is the commit. Opening reads every journal once; afterwards a miss
reads only the bytes other writers appended since (one directory listing of the journals,
not of the shards). Memory: 16 bytes per entry in the index plus at most
``max_open_shards`` mapped shards; rows are copied out of the maps on demand.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from openimagen.errors import InvalidArgumentError, InvalidTypeError
from openimagen.text.cache import journal, layout
from openimagen.text.cache.index import MISSING, HashIndex, pack, unpack
from openimagen.text.cache.rows import key_digests, unpad
from openimagen.text.cache.shards import DamagedShardError, OpenShards, write_shard
from openimagen.text.encoder import check_texts

logger = logging.getLogger("openimagen.text.cache")

_STORE_DTYPES = (torch.float16, torch.float32)
_DAMAGED_JOURNAL = (
    "text cache: ignoring the rest of journal %s (%s); the batches it commits from there "
    "on will be encoded again."
)
_DAMAGED = "text cache: ignoring damaged file %s (%s); its prompts will be encoded again."


class TextEmbeddingCache:
    """Unpadded text embeddings on disk, by ``(encoder.cache_id, prompt)``.

    Args:
        directory: the cache directory (created on the first :meth:`put`).
        dtype: storage dtype, ``torch.float16`` (default) or ``torch.float32``.
        max_open_shards: shards kept memory-mapped between reads.

    Several processes may read and write one directory at once: each writes its own
    shards and journal, and sees the others' batches whole or not at all.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        dtype: torch.dtype = torch.float16,
        max_open_shards: int = 32,
    ):
        self.directory = Path(directory)
        layout.check_directory(self.directory)
        if dtype not in _STORE_DTYPES:
            raise InvalidArgumentError("dtype", dtype, "torch.float16 or torch.float32")
        if (
            isinstance(max_open_shards, bool)
            or not isinstance(max_open_shards, int)
            or (max_open_shards < 1)
        ):
            raise InvalidArgumentError("max_open_shards", max_open_shards, "an integer >= 1")
        self.dtype = dtype
        self._index = HashIndex()
        self._shards: list[Path] = []  # shard number (in the index) -> its file
        self._dead: set[int] = set()  # shard numbers found damaged
        # journal name -> (bytes consumed, its size when last read)
        self._consumed: dict[str, tuple[int, int]] = {}
        self._reported: set[tuple[str, int]] = set()  # damaged journal records already logged
        self._writer: journal.JournalWriter | None = None
        self._open = OpenShards(max_open_shards)
        self._lock = threading.RLock()
        self.refresh()

    @property
    def shard_directory(self) -> Path:
        return self.directory / layout.DATA_DIR

    def __len__(self) -> int:
        """Number of (cache_id, prompt) entries currently known."""
        return len(self._index)

    @property
    def index_bytes(self) -> int:
        """Memory held by the in-memory index's arrays."""
        return self._index.nbytes

    def refresh(self) -> None:
        """Read what other writers (any process) committed since the last look."""
        with self._lock:
            own = self._writer.path.name if self._writer is not None else None
            hashes, locations = [], []
            for path in layout.list_journals(self.directory):
                if path.name != own:
                    for shard, shard_hashes in self._read_journal(path):
                        hashes.append(shard_hashes)
                        locations.append(pack(len(self._shards), np.arange(len(shard_hashes))))
                        self._shards.append(shard)
            if hashes:  # one index update for all of them: opening a big cache is one sort
                self._index.add(np.concatenate(hashes), np.concatenate(locations))

    def _read_journal(self, path: Path) -> list[tuple[Path, np.ndarray]]:
        """(shard, hashes of its rows) of each intact shard committed in ``path`` since last."""
        consumed, seen = self._consumed.get(path.name, (0, 0))
        try:
            size = path.stat().st_size
            if size <= consumed or size == seen:  # nothing new (or only the same torn tail)
                return []
            records, consumed, damage = journal.read_new(path, consumed)
        except OSError as exc:
            logger.warning(_DAMAGED_JOURNAL, path, f"unreadable: {exc}")
            return []
        self._consumed[path.name] = (consumed, size)
        if damage and (path.name, consumed) not in self._reported:
            self._reported.add((path.name, consumed))
            logger.warning(_DAMAGED_JOURNAL, path, damage)
        writer = path.name.removesuffix(journal.SUFFIX)
        intact = []
        for record in records:
            shard = layout.shard_path(self.directory, writer, record.seq)
            try:
                size = shard.stat().st_size
            except OSError:
                size = -1
            if size != record.size:  # missing or truncated after it was committed
                logger.warning(_DAMAGED, shard, f"size {size}, committed as {record.size}")
                continue
            intact.append((shard, record.hashes))
        return intact

    def _add(self, shard: Path, hashes: np.ndarray) -> None:
        number = len(self._shards)
        self._shards.append(shard)
        self._index.add(hashes, pack(number, np.arange(len(hashes))))

    def _locate(self, hashes: np.ndarray) -> np.ndarray:
        """Packed locations of ``hashes`` (MISSING where absent), refreshing once on a miss."""
        found = self._lookup(hashes)
        if np.any(found == MISSING):
            self.refresh()
            found = self._lookup(hashes)
        return found

    def _lookup(self, hashes: np.ndarray) -> np.ndarray:
        found = self._index.lookup(hashes)
        if self._dead:
            shard, _ = unpack(found)
            found[(found != MISSING) & np.isin(shard, list(self._dead))] = MISSING
        return found

    def contains(self, cache_id: str, texts: Sequence[str]) -> list[bool]:
        """Whether each prompt has an entry for this ``cache_id``."""
        texts = check_texts(texts)
        with self._lock:
            found = self._locate(key_digests(cache_id, texts)[:, 0])
        return (found != MISSING).tolist()

    def get(self, cache_id: str, texts: Sequence[str]) -> list[torch.Tensor | None]:
        """Each prompt's stored embeddings, [L_i, D] float32 on the CPU, or None if absent."""
        texts = check_texts(texts)
        digests = key_digests(cache_id, texts)  # [N, 2]
        out: list[torch.Tensor | None] = [None] * len(texts)
        with self._lock:
            found = self._locate(digests[:, 0])
            hits = np.flatnonzero(found != MISSING)
            if len(hits) == 0:
                return out
            shard_numbers, rows = unpack(found[hits])
            order = np.argsort(shard_numbers, kind="stable")  # the hits grouped by shard
            numbers, starts = np.unique(shard_numbers[order], return_index=True)
            for number, group in zip(numbers.tolist(), np.split(order, starts[1:]), strict=True):
                where = hits[group]
                try:
                    values = self._open.get(self._shards[number]).rows(rows[group], digests[where])
                except DamagedShardError as exc:
                    logger.warning(_DAMAGED, exc.path, exc.reason)
                    self._dead.add(number)
                    self._open.drop(exc.path)
                    continue
                for i, value in zip(where.tolist(), values, strict=True):
                    out[i] = None if value is None else torch.from_numpy(value)
        return out

    def put(
        self,
        cache_id: str,
        texts: Sequence[str],
        embeddings: torch.Tensor,
        mask: torch.Tensor,
    ) -> None:
        """Store each prompt's valid tokens ``embeddings[i][mask[i]]`` ([L_i, D]) as one shard.

        ``embeddings`` is [B, L, D] and ``mask`` [B, L] bool, as returned by
        ``TextEncoder.encode``; a prompt given twice keeps its last row.
        """
        texts = check_texts(texts)
        self.put_rows(cache_id, texts, unpad(embeddings, mask, self.dtype, batch=len(texts)))

    def put_rows(self, cache_id: str, texts: Sequence[str], rows: Sequence[torch.Tensor]) -> None:
        """Store unpadded rows [L_i, D] (as :func:`unpad` gives them) as one shard.

        The shard is float16 when every row is, else float32 (float16 values are exact in
        float32), so every row reads back exactly as given.
        """
        if not isinstance(cache_id, str) or not cache_id:
            raise InvalidTypeError("cache_id", cache_id, "a non-empty string")
        texts = check_texts(texts)
        if len(rows) != len(texts):
            raise InvalidArgumentError("rows", f"{len(rows)} rows", f"{len(texts)} (one per text)")
        last = dict(zip(texts, rows, strict=True))  # a prompt given twice keeps its last row
        texts, rows = list(last), list(last.values())
        dims = {r.shape[1] if r.ndim == 2 else -1 for r in rows}
        if len(dims) != 1 or -1 in dims:
            raise InvalidArgumentError("rows", sorted(dims), "2-d rows [L_i, D] of one width D")
        dtype = torch.float16 if all(r.dtype == torch.float16 for r in rows) else torch.float32
        lengths = np.array([r.shape[0] for r in rows], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])  # [N + 1]
        flat = torch.cat(list(rows)).detach().cpu().to(dtype).numpy()  # [T, D]
        digests = key_digests(cache_id, texts)  # [N, 2]
        with self._lock:
            writer = self._own_writer()
            shard = layout.shard_path(self.directory, writer.path.stem, writer.next_seq)
            size = write_shard(shard, cache_id, digests, offsets, flat)
            # The shard is complete and renamed into place; the journal record commits it.
            writer.append(journal.encode_record(writer.next_seq, size, digests[:, 0]))
            self._add(shard, digests[:, 0])

    def _own_writer(self) -> journal.JournalWriter:
        if self._writer is None or self._writer.pid != os.getpid():  # new, or a forked copy
            layout.write_marker(self.directory)
            name = f"{time.time_ns():016x}-{os.getpid()}-{secrets.token_hex(3)}"
            (self.directory / layout.INDEX_DIR).mkdir(parents=True, exist_ok=True)
            (self.directory / layout.DATA_DIR / name).mkdir(parents=True, exist_ok=True)
            self._writer = journal.JournalWriter(
                self.directory / layout.INDEX_DIR / f"{name}{journal.SUFFIX}"
            )
        return self._writer

    def close(self) -> None:
        """Unmap the open shards (the cache stays usable; they are mapped again on demand)."""
        self._open.clear()


__all__ = ["TextEmbeddingCache"]
