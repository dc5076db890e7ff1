"""The index in memory: 64-bit key hash -> location (shard number, row), and its search.

The cache's index lives on disk as sorted runs (runs.py, manifest.py); :class:`HashIndex`
holds only its tail, the entries of journal records not yet written to those runs (a few
tens of thousands, see ``TextEmbeddingCache(compact_every=...)``). 16 bytes per entry in
numpy arrays (no Python object per entry). New entries arrive in batches (one per shard);
each batch becomes a sorted run, and runs of similar size are merged (a log-structured
merge, as in LSM trees), so adding N entries costs O(N log N) in all and a lookup
searches O(log N) runs, each with one vectorised ``searchsorted`` (:func:`search`, which
the mapped runs on disk use too). Newer entries win: a prompt stored again (say after its
first shard was damaged) is found at its newest location.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MISSING = -1


def pack(shard: int | np.ndarray, row: int | np.ndarray) -> np.ndarray:
    """A location as one int64: shard number in the high 32 bits, row in the low 32."""
    return (np.asarray(shard, dtype=np.int64) << 32) | np.asarray(row, dtype=np.int64)


def unpack(location: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shard numbers, rows) of packed locations."""
    return location >> 32, location & 0xFFFFFFFF


def sorted_unique(hashes: np.ndarray, locations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort by hash; of equal hashes keep the last given (the newest)."""
    order = np.argsort(hashes, kind="stable")
    hashes, locations = hashes[order], locations[order]
    keep = np.ones(len(hashes), dtype=bool)
    keep[:-1] = hashes[1:] != hashes[:-1]  # the last of each run of equal hashes
    return hashes[keep], locations[keep]


def search(runs: Sequence[tuple[np.ndarray, np.ndarray]], hashes: np.ndarray) -> np.ndarray:
    """The location of each hash in sorted runs (newest last), or ``MISSING``: [N] int64."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    found = np.full(len(hashes), MISSING, dtype=np.int64)
    todo = np.arange(len(hashes))
    for run_hashes, run_locations in reversed(runs):  # newest first
        if len(todo) == 0:
            break
        if len(run_hashes) == 0:
            continue
        query = hashes[todo]
        at = np.searchsorted(run_hashes, query)
        at_clipped = np.minimum(at, len(run_hashes) - 1)
        hit = run_hashes[at_clipped] == query
        found[todo[hit]] = run_locations[at_clipped[hit]]
        todo = todo[~hit]
    return found


def _merge(
    old_h: np.ndarray, old_loc: np.ndarray, new_h: np.ndarray, new_loc: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Two sorted runs as one; where both hold a hash, the newer location wins.

    Inserts into the older run instead of sorting both again: at most about twice the
    merged run's memory at once (an argsort of the concatenation would need 3.5 times).
    """
    at = np.searchsorted(old_h, new_h)
    same = np.zeros(len(new_h), dtype=bool)
    if len(old_h):
        at_clipped = np.minimum(at, len(old_h) - 1)
        same = old_h[at_clipped] == new_h
        old_loc[at_clipped[same]] = new_loc[same]  # the old run is ours: updated in place
    keep = ~same
    return np.insert(old_h, at[keep], new_h[keep]), np.insert(old_loc, at[keep], new_loc[keep])


class HashIndex:
    """Sorted runs of (hash uint64, location int64), newest run last.

    No run grows past ``run_cap`` entries (16.8 million: 256 MiB), so the copy a merge makes
    is bounded whatever the size of the index, at the price of one more run to search per
    ``run_cap`` entries (a LAION-2B index: about 120 runs).
    """

    def __init__(self, run_cap: int = 1 << 24) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        self.count = 0  # distinct hashes
        self.run_cap = run_cap

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        return sum(h.nbytes + loc.nbytes for h, loc in self._runs)

    def add(self, hashes: np.ndarray, locations: np.ndarray) -> None:
        """Add one batch; a hash given again (in this batch or before) takes the new location."""
        for start in range(0, len(hashes), self.run_cap):
            part = slice(start, start + self.run_cap)
            run = sorted_unique(
                np.asarray(hashes[part], dtype=np.uint64), np.asarray(locations[part], np.int64)
            )
            self.count += int(np.count_nonzero(self.lookup(run[0]) == MISSING))
            self._runs.append(run)
            # Merge while the run before is at most twice as long: O(log N) runs (and a cap).
            while len(self._runs) > 1 and (
                len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0])
                and len(self._runs[-2][0]) + len(self._runs[-1][0]) <= self.run_cap
            ):
                newer = self._runs.pop()
                self._runs[-1] = _merge(*self._runs[-1], *newer)

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """The location of each hash, or ``MISSING`` (-1): [N] int64."""
        return search(self._runs, hashes)


__all__ = ["MISSING", "HashIndex", "pack", "search", "sorted_unique", "unpack"]
