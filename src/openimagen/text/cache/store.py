"""``TextEmbeddingCache``: append-only shards, per-writer journals, a mapped on-disk index.

A put writes one shard (the batch's rows) and then appends one record to this writer's
journal; the record is the commit. The index (64-bit key hash -> shard, row) lives on disk
as sorted runs, memory-mapped (manifest.py, runs.py), plus, in memory, the tail: the
journal records the runs do not cover yet. Opening maps the runs and reads only the
journals' tails; afterwards a miss reads only the bytes other writers appended since (one
stat of the manifest and one directory listing of the journals, not of the shards). When
the tail reaches ``compact_every`` entries, the process that sees it writes it into the
runs (compact.py, under a lock; a process that finds the lock taken carries on and picks
up the other's runs at its next look). Memory: the tail (16 bytes per entry, at most about
``compact_every`` of them) and at most ``max_open_shards`` mapped shards, whatever the
number of entries; the mapped runs are page cache (16 bytes per entry on disk), which the
kernel reads in as lookups touch it and may drop at any time.
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
from openimagen.text.cache import compact, journal, layout, manifest
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
_DAMAGED = compact.DAMAGED_SHARD
_NO_DISK_INDEX = (
    "text cache %s: cannot write its index on disk (%s); keeping the journals' entries in "
    "memory instead (16 bytes each)."
)
_TAIL = 1 << 30  # shard numbers from here on name tail shards (manifest.MAX_SHARDS below)


class TextEmbeddingCache:
    """Unpadded text embeddings on disk, by ``(encoder.cache_id, prompt)``.

    Args:
        directory: the cache directory (created on the first :meth:`put`).
        dtype: storage dtype, ``torch.float16`` (default) or ``torch.float32``.
        max_open_shards: shards kept memory-mapped between reads.
        compact_every: index entries kept in memory (the journals' tail) before they are
            written to the on-disk index; also the size of the pieces that writing works in.

    Several processes may read and write one directory at once: each writes its own
    shards and journal, and sees the others' batches whole or not at all.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        dtype: torch.dtype = torch.float16,
        max_open_shards: int = 32,
        compact_every: int = 1 << 16,
    ):
        self.directory = Path(directory)
        layout.check_directory(self.directory)
        if dtype not in _STORE_DTYPES:
            raise InvalidArgumentError("dtype", dtype, "torch.float16 or torch.float32")
        for name, value in (("max_open_shards", max_open_shards), ("compact_every", compact_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(name, value, "an integer >= 1")
        self.dtype, self.compact_every = dtype, compact_every
        self._view = manifest.IndexView.empty(self.directory)
        self._stamp: tuple | None = None  # the manifest's stamp when the view was loaded
        self._persist = manifest.fcntl is not None  # False: the index stays in memory
        self._reset_tail()
        self._reported: set[tuple[str, int]] = set()  # damaged journal records already logged
        self._dead: set[Path] = set()  # shards found damaged
        self._writer: journal.JournalWriter | None = None
        self._open = OpenShards(max_open_shards)
        self._lock = threading.RLock()
        self.refresh()

    def _reset_tail(self) -> None:
        """Forget the tail: it is read again from the journals, from what the view covers."""
        self._tail = HashIndex()
        self._tail_shards: list[Path] = []  # tail shard number - _TAIL -> its file
        self._tail_new = 0  # distinct hashes in the tail and not in the view
        # journal name -> (bytes consumed, its size when a read last got nowhere)
        self._consumed = {name: (pos, -1) for name, pos in self._view.manifest.covered.items()}

    @property
    def shard_directory(self) -> Path:
        return self.directory / layout.DATA_DIR

    def __len__(self) -> int:
        """Number of (cache_id, prompt) entries currently known."""
        return len(self._view) + self._tail_new

    @property
    def index_bytes(self) -> int:
        """Memory held by the index's arrays in this process (the tail)."""
        return self._tail.nbytes

    @property
    def index_mapped_bytes(self) -> int:
        """Bytes of the on-disk index mapped (page cache, not this process's own memory)."""
        return self._view.nbytes

    def refresh(self) -> None:
        """Read what other writers (any process) committed since the last look."""
        with self._lock:
            stamp = manifest.manifest_stamp(self.directory)
            if stamp != self._stamp:
                self._load_view(stamp)
            self._read_tails()

    def _load_view(self, stamp: tuple | None, *, rebuild: bool = True) -> None:
        """Map the manifest's runs (rebuilding a damaged index once); resets the tail."""
        for _ in range(3):  # another process may replace the manifest while we map it
            try:
                found = manifest.read_manifest(self.directory)
                view = manifest.IndexView(self.directory, found or manifest.Manifest())
                break
            except manifest.DamagedIndexError as exc:
                newer = manifest.manifest_stamp(self.directory)
                if newer != stamp:
                    stamp = newer
                    continue
                if rebuild and self._compact(blocking=True):
                    return  # _compact loaded the rebuilt view
                logger.warning(
                    "text cache %s: not using its on-disk index (%s)", self.directory, exc
                )
                view = manifest.IndexView.empty(self.directory)
                break
        else:
            view = manifest.IndexView.empty(self.directory)  # pragma: no cover (a storm)
        self._view, self._stamp = view, stamp
        self._reset_tail()

    def _compact(self, *, blocking: bool) -> bool:
        """Write the journals' tails into the on-disk index; False if not done (lock busy)."""
        if not self._persist or not (self.directory / layout.INDEX_DIR).is_dir():
            return False
        try:
            with manifest.index_lock(self.directory, blocking=blocking) as held:
                if not held:
                    return False
                compact.update(self.directory, chunk=self.compact_every)
        except OSError as exc:  # a read-only directory, a full disk: carry on in memory
            logger.warning(_NO_DISK_INDEX, self.directory, exc)
            self._persist = False
            return False
        self._load_view(manifest.manifest_stamp(self.directory), rebuild=False)
        return True

    def _read_tails(self) -> None:
        """Read every journal past what is consumed; write the tail to disk when it is long."""
        for _ in range(3):  # a compaction resets the tail; then the journals are read again
            if not self._read_tails_once():
                return

    def _read_tails_once(self) -> bool:
        """One pass over the journals; True when a compaction reset the tail midway."""
        for path in layout.list_journals(self.directory):
            while (batch := self._read_journal(path)) is not None:
                for shard, hashes in batch:
                    self._add_tail(shard, hashes)
                if len(self._tail) >= self.compact_every and self._compact(
                    blocking=len(self._tail) >= 4 * self.compact_every
                ):
                    return True
        return False

    def _read_journal(self, path: Path) -> list[tuple[Path, np.ndarray]] | None:
        """(shard, hashes of its rows) of the intact shards in the next piece of ``path``.

        None when there is nothing more to read (yet).
        """
        consumed, stuck = self._consumed.get(path.name, (0, -1))
        try:
            size = path.stat().st_size
            if size <= consumed or size == stuck:  # nothing new (or only the same torn tail)
                return None
            records, new, damage = journal.read_new(path, consumed, 8 * self.compact_every)
        except OSError as exc:
            logger.warning(_DAMAGED_JOURNAL, path, f"unreadable: {exc}")
            return None
        self._consumed[path.name] = (new, size if new == consumed else -1)
        if damage and (path.name, new) not in self._reported:
            self._reported.add((path.name, new))
            logger.warning(_DAMAGED_JOURNAL, path, damage)
        writer = path.name.removesuffix(journal.SUFFIX)
        intact = []
        for record in records:
            shard = compact.committed_shard(self.directory, writer, record)
            if shard is not None:
                intact.append((shard, record.hashes))
        return intact if new > consumed else None

    def _add_tail(self, shard: Path, hashes: np.ndarray) -> None:
        distinct = np.unique(hashes)
        fresh = distinct[self._tail.lookup(distinct) == MISSING]
        self._tail_new += int(np.count_nonzero(self._view.lookup(fresh) == MISSING))
        number = _TAIL + len(self._tail_shards)
        self._tail_shards.append(shard)
        self._tail.add(hashes, pack(number, np.arange(len(hashes))))

    def _shard_file(self, number: int) -> Path:
        if number >= _TAIL:
            return self._tail_shards[number - _TAIL]
        return self._view.shard_path(number)

    def _locate(self, hashes: np.ndarray) -> np.ndarray:
        """Packed locations of ``hashes`` (MISSING where absent), refreshing once on a miss."""
        found = self._lookup(hashes)
        if np.any(found == MISSING):
            self.refresh()
            found = self._lookup(hashes)
        return found

    def _lookup(self, hashes: np.ndarray) -> np.ndarray:
        found = self._tail.lookup(hashes)  # the tail is newer than the runs
        missing = np.flatnonzero(found == MISSING)
        if len(missing):
            found[missing] = self._view.lookup(hashes[missing])
        if self._dead:
            shard, _ = unpack(found)
            for number in np.unique(shard[found != MISSING]).tolist():
                if self._shard_file(number) in self._dead:
                    found[(found != MISSING) & (shard == number)] = MISSING
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
                path = self._shard_file(number)
                try:
                    values = self._open.get(path).rows(rows[group], digests[where])
                except DamagedShardError as exc:
                    logger.warning(_DAMAGED, exc.path, exc.reason)
                    self._dead.add(path)
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
            before = writer.size
            writer.append(journal.encode_record(writer.next_seq, size, digests[:, 0]))
            self._add_tail(shard, digests[:, 0])
            if self._consumed.get(writer.path.name, (0, -1))[0] == before:  # read up to here
                self._consumed[writer.path.name] = (writer.size, -1)
            if len(self._tail) >= self.compact_every and self._compact(blocking=False):
                self._read_tails()

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

    def compact(self) -> None:
        """Write every journal record into the on-disk index now (as a full tail would).

        Waits for another process doing the same; does nothing where the index cannot be
        written (see ``compact_every``).
        """
        with self._lock:
            if self._compact(blocking=True):
                self._read_tails()


__all__ = ["TextEmbeddingCache"]
