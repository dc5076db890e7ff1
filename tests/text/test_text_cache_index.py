"""The text cache's index on disk: sorted runs, their merges, the manifest, damage, rebuilds,
crashes while it is written, and several processes sharing it."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os

import numpy as np
import pytest
import torch

from cache_testutil import FakeEncoder, batch_texts, expected_row, write_batches
from openimagen.text import TextEmbeddingCache
from openimagen.text.cache import journal, runs
from openimagen.text.cache.index import MISSING, search

CACHE_ID = FakeEncoder.cache_id


def row_of(text: str, version: int) -> torch.Tensor:
    """A row that says which put stored it (so the newest one can be told apart)."""
    return expected_row(text) + version


def put_versions(cache, batches: int, size: int = 9, repeat: int = 4) -> dict[str, torch.Tensor]:
    """``batches`` puts, each repeating ``repeat`` prompts of the one before; the newest rows."""
    newest: dict[str, torch.Tensor] = {}
    for b in range(batches):
        texts = [f"prompt {b} {k}" for k in range(size)] + [
            f"prompt {b - 1} {k}" for k in range(repeat)
        ]
        rows = [row_of(t, b) for t in texts]
        cache.put_rows(CACHE_ID, texts, rows)
        newest.update(zip(texts, rows, strict=True))
    return newest


def assert_newest(cache, newest: dict[str, torch.Tensor]) -> None:
    texts = sorted(newest)
    got = cache.get(CACHE_ID, texts)
    for text, row in zip(texts, got, strict=True):
        assert row is not None and torch.equal(row, newest[text]), text
    assert len(cache) == len(newest)
    assert cache.get(CACHE_ID, ["never stored"]) == [None]


def read_manifest(directory) -> dict:
    return json.loads((directory / "runs" / "manifest.json").read_text())


def run_files(directory) -> list:
    return sorted((directory / "runs").glob("*.run"))


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_merged_runs_match_a_dict_newest_winning(tmp_path, chunk):
    rng = np.random.default_rng(chunk)
    reference: dict[int, int] = {}
    merged = None
    for k in range(6):  # each run newer than the merge of those before it
        hashes = rng.choice(400, size=90, replace=False).astype(np.uint64)
        locations = rng.integers(0, 1 << 40, size=90)
        order = np.argsort(hashes)
        path = tmp_path / f"{k}.run"
        runs.write_run(path, 90, iter([(hashes[order], locations[order])]))
        reference.update(zip(hashes.tolist(), locations.tolist(), strict=True))
        if merged is None:
            merged = path
            continue
        out = tmp_path / f"merged{k}.run"
        capacity = runs.read_header(merged)[0] + 90
        chunks = runs.merge_chunks(runs.read_chunks(merged, chunk), runs.read_chunks(path, chunk))
        count = runs.write_run(out, capacity, chunks)
        merged = out
        assert count == len(reference) <= capacity  # a hash held by both is kept once
    hashes, locations = runs.map_run(merged, len(reference))
    assert np.all(np.diff(hashes.astype(np.int64)) != 0) and np.all(hashes[1:] > hashes[:-1])
    queries = np.arange(500, dtype=np.uint64)
    expected = [reference.get(q, MISSING) for q in queries.tolist()]
    assert search([(hashes, locations)], queries).tolist() == expected


def test_a_garbled_run_fails_its_checksum_when_read_whole(tmp_path):
    path = tmp_path / "a.run"
    runs.write_run(path, 5, iter([(np.arange(5, dtype=np.uint64), np.arange(5))]))
    data = bytearray(path.read_bytes())
    data[runs.HEADER_SIZE + 8 * 5 + 3] ^= 0xFF  # a location byte
    path.write_bytes(bytes(data))
    runs.map_run(path, 5)  # the header is fine, so it maps
    with pytest.raises(runs.DamagedRunError, match="checksum"):
        list(runs.read_chunks(path, 2))
    path.write_bytes(bytes(data[:-1]))
    with pytest.raises(runs.DamagedRunError, match="size"):
        runs.map_run(path, 5)


def test_journal_read_in_pieces_gives_every_record_once(tmp_path):
    writer = journal.JournalWriter(tmp_path / "w.log")
    for seq in range(7):
        writer.append(journal.encode_record(seq, 100 + seq, np.arange(seq * 3, dtype=np.uint64)))
    pos, seqs = 0, []
    while True:
        records, pos, damage = journal.read_new(writer.path, pos, max_bytes=1)
        assert damage is None and len(records) <= 1  # pieces of one record at most
        if not records:
            break
        seqs += [r.seq for r in records]
    assert seqs == list(range(7)) and pos == writer.size


def test_lookups_after_many_batches_and_merges_match_a_dict(tmp_path):
    cache = TextEmbeddingCache(tmp_path, compact_every=20)
    newest = put_versions(cache, 60)
    assert_newest(cache, newest)
    manifest = read_manifest(tmp_path)
    assert len(newest) - 20 < manifest["entries"] <= len(newest)  # all but the tail on disk
    assert 1 <= len(manifest["runs"]) <= 2 * np.log2(len(newest))  # merged: O(log N) runs
    assert len(run_files(tmp_path)) == len(manifest["runs"])  # replaced runs are deleted
    assert cache.index_bytes <= 16 * 4 * 20  # in memory: only the tail, however many entries
    assert_newest(TextEmbeddingCache(tmp_path), newest)  # another process opening it


def test_reopening_reads_only_the_journal_tail(tmp_path, monkeypatch):
    cache = TextEmbeddingCache(tmp_path, compact_every=25)
    newest = put_versions(cache, 30)
    last = ["one more", "and another"]  # fewer than compact_every: they stay in the tail
    cache.put_rows(CACHE_ID, last, [expected_row(t) for t in last])
    newest.update((t, expected_row(t)) for t in last)
    covered = read_manifest(tmp_path)["covered"]
    (log,) = (tmp_path / "index").glob("*.log")
    assert 0 < covered[log.name] < log.stat().st_size  # a tail the runs do not cover yet
    reads, real_read = [], journal.read_new

    def spy(path, consumed, max_bytes=None):
        records, new, damage = real_read(path, consumed, max_bytes)
        reads.append((consumed, len(records)))
        return records, new, damage

    monkeypatch.setattr(journal, "read_new", spy)
    reopened = TextEmbeddingCache(tmp_path, compact_every=25)
    assert reads and min(start for start, _ in reads) == covered[log.name]  # never from 0
    tail = sum(n for _, n in reads)
    assert 0 < tail < 30 / 2  # a few records of the 30, not all of them replayed
    assert_newest(reopened, newest)


DAMAGE = {
    "missing run": lambda d: run_files(d)[0].unlink(),
    "truncated run": lambda d: os.truncate(run_files(d)[0], 100),
    "garbled run header": lambda d: _flip(run_files(d)[0], 9),
    "missing manifest": lambda d: (d / "runs" / "manifest.json").unlink(),
    "garbled manifest": lambda d: (d / "runs" / "manifest.json").write_text("{not json"),
    "truncated shard table": lambda d: os.truncate(next((d / "runs").glob("*.shards")), 3),
}


def _flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_or_missing_index_is_rebuilt_from_the_journals(tmp_path, damage, caplog):
    newest = put_versions(TextEmbeddingCache(tmp_path, compact_every=30), 20)
    assert run_files(tmp_path)
    DAMAGE[damage](tmp_path)
    with caplog.at_level(logging.WARNING, logger="openimagen.text"):
        rebuilt = TextEmbeddingCache(tmp_path, compact_every=30)
    if damage != "missing manifest":  # no manifest is not damage: the index is built
        assert any("rebuilding the index" in r.getMessage() for r in caplog.records)
    assert_newest(rebuilt, newest)
    manifest = read_manifest(tmp_path)
    assert manifest["entries"] == len(newest) and run_files(tmp_path)  # written again
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="openimagen.text"):
        again = TextEmbeddingCache(tmp_path, compact_every=30)
    assert not caplog.records  # the rebuilt index is sound
    assert_newest(again, newest)


def test_a_garbled_run_body_is_found_by_the_next_merge_and_rebuilt(tmp_path, caplog):
    cache = TextEmbeddingCache(tmp_path, compact_every=30)
    newest = put_versions(cache, 20)
    (first, *_) = sorted(read_manifest(tmp_path)["runs"], key=lambda r: -r["count"])
    _flip(tmp_path / "runs" / first["name"], runs.HEADER_SIZE + 5)  # a hash: lookups miss
    with caplog.at_level(logging.WARNING, logger="openimagen.text"):
        newest.update(put_versions(cache, 60))  # compactions merge into the largest run
        cache.compact()
    assert any("checksum" in r.getMessage() for r in caplog.records)
    assert_newest(TextEmbeddingCache(tmp_path), newest)


def test_leftovers_of_a_crash_while_writing_the_index_are_ignored_then_removed(tmp_path):
    cache = TextEmbeddingCache(tmp_path, compact_every=30)
    newest = put_versions(cache, 10)
    where = tmp_path / "runs"
    before = read_manifest(tmp_path)
    (where / ".0000-half.run.abc.tmp").write_bytes(b"\0" * 100)  # killed before its rename
    (where / "0000-stray.run").write_bytes(
        run_files(tmp_path)[0].read_bytes()
    )  # before the manifest
    (table,) = where.glob("*.shards")
    with open(table, "ab") as handle:
        handle.write(b"\xff" * 24)  # shard entries appended, manifest not yet written
    reopened = TextEmbeddingCache(tmp_path, compact_every=30)
    assert read_manifest(tmp_path) == before  # opening trusts the manifest, not the leftovers
    assert_newest(reopened, newest)
    newest.update(put_versions(reopened, 10))
    reopened.compact()
    names = {p.name for p in where.iterdir()}
    assert not any("stray" in n or n.endswith(".tmp") for n in names)
    assert table.stat().st_size == 8 * read_manifest(tmp_path)["shards"]  # cut back, grown
    assert_newest(TextEmbeddingCache(tmp_path), newest)


def test_two_writers_and_a_reader_share_the_index_on_disk(tmp_path, caplog):
    context = multiprocessing.get_context("spawn")
    batches, shared = 24, 3
    with context.Pool(2) as pool:
        results = [
            pool.apply_async(write_batches, (str(tmp_path), w, batches, shared, 12)) for w in (0, 1)
        ]
        reader = TextEmbeddingCache(tmp_path, compact_every=12)  # compacts too, as it reads
        while not all(r.ready() for r in results):
            for b in range(0, batches, 5):
                texts = batch_texts(0, b) + batch_texts(1, b)
                for text, row in zip(texts, reader.get(CACHE_ID, texts), strict=True):
                    assert row is None or torch.equal(row, expected_row(text))
        for r in results:
            r.get(timeout=120)
    every = [t for b in range(batches) for w in (0, 1) for t in batch_texts(w, b)]
    every += [f"shared batch {b} prompt {k}" for b in range(batches) for k in range(shared)]
    for cache in (reader, TextEmbeddingCache(tmp_path, compact_every=12)):
        rows = cache.get(CACHE_ID, every)
        assert all(
            r is not None and torch.equal(r, expected_row(t))
            for r, t in zip(rows, every, strict=True)
        )
        assert len(cache) == len(every)
    with caplog.at_level(logging.WARNING, logger="openimagen.text"):
        TextEmbeddingCache(tmp_path).compact()
    assert not caplog.records  # nothing was damaged by the concurrent compactions
    manifest = read_manifest(tmp_path)
    assert manifest["entries"] == len(every)
    assert sorted(manifest["covered"]) == sorted(p.name for p in (tmp_path / "index").glob("*.log"))
