"""The text cache at scale: index, torn writes, killed writers, concurrent writers, resume,
version-1 directories. A tiny deterministic encoder (cache_testutil.FakeEncoder) throughout."""

from __future__ import annotations

import json
import logging
import multiprocessing
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cache_testutil import FakeEncoder, batch_texts, expected_row, write_batches
from openimagen.errors import InvalidArgumentError
from openimagen.text import TextEmbeddingCache, cache_key, encode_with_cache, fill_cache
from openimagen.text.cache import migrate_v1
from openimagen.text.cache.index import MISSING, HashIndex

TESTS = Path(__file__).parents[1]


def assert_rows(cache, texts, present=True):
    rows = cache.get(FakeEncoder.cache_id, texts)
    for text, row in zip(texts, rows, strict=True):
        if present:
            assert row is not None and torch.equal(row, expected_row(text)), text
        else:
            assert row is None, text


def test_round_trip_and_hits_after_reopen(tmp_path):
    texts = [f"prompt number {i}" for i in range(50)]
    encoder = FakeEncoder()
    first, first_mask = encode_with_cache(encoder, texts, TextEmbeddingCache(tmp_path))
    again = TextEmbeddingCache(tmp_path)  # a new process would start exactly like this
    assert len(again) == 50
    second, second_mask = encode_with_cache(encoder, texts, again)
    assert len(encoder.calls) == 1  # all hits the second time
    assert torch.equal(first, second) and torch.equal(first_mask, second_mask)
    assert_rows(again, texts)
    assert again.get(FakeEncoder.cache_id, ["never stored"]) == [None]


def test_index_holds_16_bytes_per_entry_and_newest_wins():
    rng = np.random.default_rng(0)
    index, reference = HashIndex(), {}
    for batch in range(200):  # many small batches: runs are merged as they grow
        hashes = rng.integers(0, 5000, size=37, dtype=np.uint64)  # repeats across batches
        locations = np.arange(37, dtype=np.int64) + 1000 * batch
        index.add(hashes, locations)
        reference.update(zip(hashes.tolist(), locations.tolist(), strict=True))
    queries = np.arange(6000, dtype=np.uint64)
    expected = [reference.get(q, MISSING) for q in queries.tolist()]
    assert index.lookup(queries).tolist() == expected
    assert len(index) == len(reference)
    assert index.nbytes <= 16 * 200 * 37  # at most 16 bytes per entry added
    distinct = HashIndex()
    for batch in range(300):
        distinct.add(rng.permutation(1000).astype(np.uint64) + 1000 * batch, np.zeros(1000))
    assert len(distinct) == 300_000 and distinct.nbytes == 16 * 300_000  # no Python objects
    assert len(distinct._runs) <= 2 * np.log2(300)  # O(log N) sorted runs
    capped = HashIndex(run_cap=50_000)  # a merge never copies more than 50,000 entries
    for batch in range(300):
        capped.add(np.arange(1000, dtype=np.uint64) + 1000 * batch, np.arange(1000) + batch)
    assert all(len(h) <= 50_000 for h, _ in capped._runs) and len(capped) == 300_000
    queries = np.array([0, 999, 150_500, 299_999, 300_000], dtype=np.uint64)
    assert capped.lookup(queries).tolist() == [0, 999, 500 + 150, 999 + 299, MISSING]


def test_a_64_bit_collision_is_a_miss_never_another_prompt(tmp_path, monkeypatch):
    from openimagen.text.cache import store
    from openimagen.text.cache.rows import key_digests

    def colliding(cache_id, texts):  # every key gets the same 64-bit index hash
        digests = key_digests(cache_id, texts).copy()
        digests[:, 0] = 7
        return digests

    monkeypatch.setattr(store, "key_digests", colliding)
    cache, encoder = TextEmbeddingCache(tmp_path), FakeEncoder()
    cache.put(encoder.cache_id, ["a"], *encoder.encode(["a"]))
    cache.put(encoder.cache_id, ["bb"], *encoder.encode(["bb"]))
    assert cache.get(encoder.cache_id, ["a"]) == [None]  # the index points to "bb"'s row
    assert_rows(cache, ["bb"])


def test_torn_and_damaged_journal_keep_the_complete_batches(tmp_path, caplog):
    cache, encoder = TextEmbeddingCache(tmp_path), FakeEncoder()
    batches = [batch_texts(0, b) for b in range(3)]
    for texts in batches:
        cache.put(encoder.cache_id, texts, *encoder.encode(texts))
    (log,) = tmp_path.rglob("*.log")
    whole = log.read_bytes()
    log.write_bytes(whole[:-10])  # the last record torn, as by a crash in its write
    with caplog.at_level(logging.WARNING, logger="openimagen.text"):
        torn = TextEmbeddingCache(tmp_path)
    assert not caplog.records  # an incomplete tail is not damage: it may still be written
    assert len(torn) == 10
    assert_rows(torn, batches[0] + batches[1])
    assert_rows(torn, batches[2], present=False)
    record = len(whole) // 3
    log.write_bytes(whole[: record + 30] + b"\xff" * 8 + whole[record + 38 :])  # a bad hash
    with caplog.at_level(logging.WARNING, logger="openimagen.text"):
        garbled = TextEmbeddingCache(tmp_path)
    assert any(str(log) in r.getMessage() and "checksum" in r.getMessage() for r in caplog.records)
    assert_rows(garbled, batches[0])
    assert_rows(garbled, batches[1] + batches[2], present=False)


def test_torn_shard_is_ignored_on_open(tmp_path, caplog):
    cache, encoder = TextEmbeddingCache(tmp_path), FakeEncoder()
    batches = [batch_texts(0, b) for b in range(3)]
    for texts in batches:
        cache.put(encoder.cache_id, texts, *encoder.encode(texts))
    shard = sorted(tmp_path.rglob("*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:-7])
    with caplog.at_level(logging.WARNING, logger="openimagen.text"):
        reopened = TextEmbeddingCache(tmp_path)
    assert any(str(shard) in r.getMessage() for r in caplog.records)
    assert_rows(reopened, batches[0] + batches[2])
    assert_rows(reopened, batches[1], present=False)
    encoder = FakeEncoder()
    encode_with_cache(encoder, [t for b in batches for t in b], reopened)
    assert encoder.encoded == batches[1]  # only the torn batch is encoded again


@pytest.mark.parametrize("kill_in", ["journal", "shard", "index", "none"])
def test_a_killed_writer_leaves_its_complete_batches(tmp_path, kill_in):
    command = [sys.executable, str(TESTS / "cache_testutil.py"), str(tmp_path), "4", kill_in]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    committed = []
    for line in child.stdout:
        committed.append(int(line.split()[1]))
        if kill_in == "none" and len(committed) == 6:
            child.kill()  # SIGKILL from outside, wherever the writer is
            break
    child.wait(timeout=60)
    assert child.returncode == -9
    assert committed == list(range(len(committed))) and len(committed) >= 4
    cache = TextEmbeddingCache(tmp_path)
    for b in range(len(committed) + 2):
        texts = batch_texts(0, b, size=1 + b % 7)
        found = [r is not None for r in cache.get(FakeEncoder.cache_id, texts)]
        assert found in ([True] * len(texts), [False] * len(texts)), b  # whole batches only
        if b in committed:
            assert_rows(cache, texts)
    if kill_in == "index":  # killed after its batch was committed: that batch is there
        committed.append(len(committed))
        assert_rows(cache, batch_texts(0, committed[-1], size=1 + committed[-1] % 7))
        assert list((tmp_path / "runs").glob(".*.tmp"))  # the half-written run is left over
    if kill_in != "none":
        assert len(cache) == sum(1 + b % 7 for b in committed)  # the killed batch is not there
    encode_with_cache(FakeEncoder(), batch_texts(0, 99), cache)  # and the cache takes writes
    assert_rows(TextEmbeddingCache(tmp_path), batch_texts(0, 99))


def test_two_processes_writing_at_once_lose_and_corrupt_nothing(tmp_path, caplog):
    context = multiprocessing.get_context("spawn")
    batches, shared = 40, 3
    with context.Pool(2) as pool:
        results = [
            pool.apply_async(write_batches, (str(tmp_path), w, batches, shared)) for w in (0, 1)
        ]
        reader = TextEmbeddingCache(tmp_path)
        while not all(r.ready() for r in results):  # read while they write: whole or absent
            for b in range(0, batches, 7):
                texts = batch_texts(0, b) + batch_texts(1, b)
                for text, row in zip(texts, reader.get("fake-8", texts), strict=True):
                    assert row is None or torch.equal(row, expected_row(text))
        calls = [r.get(timeout=120) for r in results]
    with caplog.at_level(logging.WARNING, logger="openimagen.text"):
        cache = TextEmbeddingCache(tmp_path)
    assert not caplog.records
    every = [t for b in range(batches) for w in (0, 1) for t in batch_texts(w, b)]
    every += [f"shared batch {b} prompt {k}" for b in range(batches) for k in range(shared)]
    assert len(cache) == len(every)
    assert_rows(cache, every)
    # each writer encoded its own prompts once; a shared one at most once per writer
    assert all(batches * 5 <= sum(c) <= batches * (5 + shared) for c in calls)
    assert len(list((tmp_path / "index").iterdir())) == 2  # one journal per writer


def test_fill_cache_resumes_after_an_interrupt_and_encodes_nothing_twice(tmp_path):
    texts = [f"caption {i}" for i in range(100)] + ["caption 5", "caption 7"]  # 2 repeats
    interrupted = FakeEncoder(fail_after=4)  # Ctrl-C during the 4th batch of 10
    with pytest.raises(KeyboardInterrupt):
        fill_cache(interrupted, texts, TextEmbeddingCache(tmp_path), batch_size=10,
                   shard_size=35, progress=False)  # fmt: skip
    done = interrupted.encoded
    assert len(done) == 30  # 3 batches encoded; stored although no shard of 35 was full
    resumed = FakeEncoder()
    assert fill_cache(resumed, iter(texts), TextEmbeddingCache(tmp_path), batch_size=10,
                      shard_size=35, progress=False) == 70  # fmt: skip
    assert not set(done) & set(resumed.encoded)  # nothing already stored is encoded again
    assert sorted(done + resumed.encoded) == sorted(set(texts))
    assert_rows(TextEmbeddingCache(tmp_path), texts)


def test_encode_text_cli_resumes_with_a_progress_bar(tmp_path, capsys, monkeypatch):
    import openimagen.text
    from cli_testutil import run

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"caption {i}\n" for i in range(60)))
    encoders = [FakeEncoder(fail_after=3), FakeEncoder()]
    monkeypatch.setattr(openimagen.text, "load_text_encoder", lambda *a, **k: encoders.pop(0))
    args = ["encode-text", "--prompts", str(prompts), "--cache", str(tmp_path / "c"),
            "--batch-size", "10", "--shard-size", "10"]  # fmt: skip
    first, second = encoders
    assert run(args, capsys)[0] == 130  # interrupted (Ctrl-C)
    code, out, err = run(args, capsys)
    assert code == 0 and out.startswith("40 new, 20 already cached")
    assert "encode-text" in err and "60/60" in err  # the bar counts every prompt read
    assert len(first.encoded) == 20 and not set(first.encoded) & set(second.encoded)


def write_v1(directory: Path, cache_id: str, texts: list[str]) -> None:
    """A version-1 directory as the previous release wrote it (one shard + index per put)."""
    from safetensors.torch import save_file

    shards = directory / "shards"
    shards.mkdir(parents=True)
    for i, text in enumerate(texts):
        key = cache_key(cache_id, text)
        save_file({key: expected_row(text).half()}, shards / f"{i:020d}-ab.safetensors")
        index = {"format": "openimagen-text-cache", "version": 1, "cache_id": cache_id,
                 "shard": f"{i:020d}-ab.safetensors", "entries": {key: text}}  # fmt: skip
        (shards / f"{i:020d}-ab.json").write_text(json.dumps(index))


def test_a_version_1_directory_is_refused_in_one_line_then_migrated(tmp_path, capsys):
    from cli_testutil import run

    texts = [f"old caption {i}" for i in range(7)]
    write_v1(tmp_path, FakeEncoder.cache_id, texts)
    with pytest.raises(InvalidArgumentError, match="version 1") as refused:
        TextEmbeddingCache(tmp_path)
    message = str(refused.value)
    assert "\n" not in message and f"encode-text --cache {tmp_path} --migrate" in message
    code, _, err = run(["encode-text", "x", "--cache", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1 and "--migrate" in err
    code, out, _ = run(["encode-text", "--cache", str(tmp_path), "--migrate"], capsys)
    assert code == 0 and out.startswith("7 entries migrated")
    cache = TextEmbeddingCache(tmp_path)
    assert len(cache) == 7
    assert_rows(cache, texts)
    assert (tmp_path / "shards-v1-migrated").is_dir() and not (tmp_path / "shards").exists()
    assert migrate_v1(tmp_path) == 0  # nothing left to do


def test_an_interrupted_migration_is_finished_by_running_it_again(tmp_path, monkeypatch, caplog):
    texts = [f"old caption {i}" for i in range(7)]
    write_v1(tmp_path, FakeEncoder.cache_id, texts)
    real_put, calls = TextEmbeddingCache.put_rows, []

    def put_then_fail(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # after the first shard of 3 was stored
        real_put(self, *args)

    monkeypatch.setattr(TextEmbeddingCache, "put_rows", put_then_fail)
    with pytest.raises(KeyboardInterrupt):
        migrate_v1(tmp_path, shard_size=3)
    monkeypatch.setattr(TextEmbeddingCache, "put_rows", real_put)
    with caplog.at_level(logging.WARNING, logger="openimagen.text"):
        partial = TextEmbeddingCache(tmp_path)  # opens, says the migration is unfinished
    assert len(partial) == 3 and any("--migrate" in r.getMessage() for r in caplog.records)
    assert migrate_v1(tmp_path, shard_size=3) == 4  # only what was not copied yet
    assert_rows(TextEmbeddingCache(tmp_path), texts)


def fork_child_put(cache) -> None:
    encoder = FakeEncoder()
    cache.put(encoder.cache_id, batch_texts(1, 0), *encoder.encode(batch_texts(1, 0)))


@pytest.mark.skipif(sys.platform != "linux", reason="fork")
def test_a_forked_copy_writes_its_own_journal(tmp_path):
    cache, encoder = TextEmbeddingCache(tmp_path), FakeEncoder()
    cache.put(encoder.cache_id, batch_texts(0, 0), *encoder.encode(batch_texts(0, 0)))
    child = multiprocessing.get_context("fork").Process(target=fork_child_put, args=(cache,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    cache.put(encoder.cache_id, batch_texts(0, 1), *encoder.encode(batch_texts(0, 1)))
    assert len(list((tmp_path / "index").iterdir())) == 2  # never two writers on one journal
    assert_rows(
        TextEmbeddingCache(tmp_path), batch_texts(0, 0) + batch_texts(1, 0) + batch_texts(0, 1)
    )
