"""The on-disk text-embedding cache: hits, misses, precision, damage and concurrent writers."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from openimagen.errors import ShapeError
from openimagen.text import TextEmbeddingCache, encode_with_cache, fill_cache

PROMPTS = ["a red circle", "two blue squares above a green triangle", "a yellow star"]


class Spy:
    """A text encoder that forwards to a real one and records every prompt it encodes."""

    def __init__(self, encoder, cache_id: str | None = None):
        self.inner = encoder
        self.name, self.dim, self.max_length = encoder.name, encoder.dim, encoder.max_length
        self.cache_id = cache_id or encoder.cache_id
        self.device = encoder.device
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return self.inner.encode(texts)

    @property
    def encoded(self) -> list[str]:
        return [t for call in self.calls for t in call]


def all_files(directory):
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


def test_second_call_encodes_nothing_and_matches_fresh(minilm, tmp_path):
    cache = TextEmbeddingCache(tmp_path / "cache")
    spy = Spy(minilm)
    first, first_mask = encode_with_cache(spy, PROMPTS, cache)
    assert spy.encoded == PROMPTS

    second, second_mask = encode_with_cache(spy, PROMPTS, TextEmbeddingCache(tmp_path / "cache"))
    assert len(spy.calls) == 1  # nothing encoded the second time, even from a new instance
    # A hit and the miss that stored it give identical values (both at stored precision).
    assert torch.equal(first, second) and torch.equal(first_mask, second_mask)

    fresh, fresh_mask = minilm.encode(PROMPTS)
    assert torch.equal(second_mask, fresh_mask)
    # float16 storage: relative error at most 2**-11 per value.
    assert torch.all((second - fresh).abs() <= fresh.abs() * 2**-11 + 1e-7)
    assert torch.all(second[~second_mask] == 0)


def test_only_missing_prompts_are_encoded_once_each(minilm, tmp_path):
    cache = TextEmbeddingCache(tmp_path)
    spy = Spy(minilm)
    encode_with_cache(spy, PROMPTS[:2], cache)
    batch = [PROMPTS[1], PROMPTS[2], PROMPTS[1], PROMPTS[2]]
    embeddings, mask = encode_with_cache(spy, batch, cache)
    assert spy.calls == [PROMPTS[:2], [PROMPTS[2]]]
    assert torch.equal(embeddings[0], embeddings[2]) and torch.equal(embeddings[1], embeddings[3])
    fresh, fresh_mask = minilm.encode(batch)
    assert torch.equal(mask, fresh_mask)
    torch.testing.assert_close(embeddings, fresh, atol=2e-3, rtol=2e-3)


def test_another_cache_id_does_not_hit(minilm, tmp_path):
    cache = TextEmbeddingCache(tmp_path)
    encode_with_cache(Spy(minilm), PROMPTS, cache)
    other = Spy(minilm, cache_id=minilm.cache_id + "-other")
    assert cache.get(other.cache_id, PROMPTS) == [None, None, None]
    encode_with_cache(other, PROMPTS, cache)
    assert other.encoded == PROMPTS


def test_fill_cache_counts_new_prompts(minilm, tmp_path):
    cache = TextEmbeddingCache(tmp_path)
    spy = Spy(minilm)
    prompts = PROMPTS + [PROMPTS[0], "a purple hexagon"]
    assert fill_cache(spy, prompts, cache, batch_size=2, shard_size=2, progress=False) == 4
    assert sorted(len(c) for c in spy.calls) == [2, 2]
    assert fill_cache(spy, prompts, cache, batch_size=2, progress=False) == 0
    assert len(spy.calls) == 2
    assert len(TextEmbeddingCache(tmp_path)) == 4
    shards = [f for f in all_files(tmp_path) if f.endswith(".safetensors")]
    assert len(shards) == 2  # one shard per shard_size prompts
    journals = [f for f in all_files(tmp_path) if f.endswith(".log")]
    assert len(journals) == 1  # one journal per writer, one record per shard


def test_no_temporary_files_remain(minilm, tmp_path):
    cache = TextEmbeddingCache(tmp_path)
    fill_cache(minilm, PROMPTS, cache, progress=False)
    embeddings, mask = minilm.encode(PROMPTS)
    with pytest.raises(ShapeError):
        cache.put(minilm.cache_id, PROMPTS, embeddings, mask[:, :2])
    files = all_files(tmp_path)
    assert len(files) == 3  # format.json, one shard, its writer's journal
    assert all(not f.split("/")[-1].startswith(".") and not f.endswith(".tmp") for f in files)


def test_damaged_shard_is_skipped_with_a_warning_and_recomputed(minilm, tmp_path, caplog):
    fill_cache(minilm, PROMPTS, TextEmbeddingCache(tmp_path), progress=False)
    (shard,) = tmp_path.rglob("*.safetensors")
    shard.write_bytes(shard.read_bytes()[:-100])  # truncated, as by a full disk
    with caplog.at_level(logging.WARNING, logger="openimagen.text"):
        cache = TextEmbeddingCache(tmp_path)
    assert any(str(shard) in r.getMessage() for r in caplog.records)
    assert cache.get(minilm.cache_id, PROMPTS) == [None, None, None]
    spy = Spy(minilm)
    embeddings, _ = encode_with_cache(spy, PROMPTS, cache)
    assert spy.encoded == PROMPTS
    torch.testing.assert_close(embeddings, minilm.encode(PROMPTS)[0], atol=2e-3, rtol=2e-3)
    # The recomputed entries live in a new shard, so a later reader finds them.
    assert TextEmbeddingCache(tmp_path).contains(minilm.cache_id, PROMPTS) == [True] * 3


def test_shard_damaged_after_it_was_indexed(minilm, tmp_path, caplog):
    cache = TextEmbeddingCache(tmp_path)
    fill_cache(minilm, PROMPTS, cache, progress=False)
    (shard,) = tmp_path.rglob("*.safetensors")
    shard.write_bytes(b"\x00" * 64)
    with caplog.at_level(logging.WARNING, logger="openimagen.text"):
        assert cache.get(minilm.cache_id, PROMPTS) == [None, None, None]
    assert any(str(shard) in r.getMessage() for r in caplog.records)


def test_damaged_index_is_skipped_with_a_warning(minilm, tmp_path, caplog):
    fill_cache(minilm, PROMPTS, TextEmbeddingCache(tmp_path), progress=False)
    (index,) = tmp_path.rglob("*.log")
    index.write_bytes(b"garbage!" + index.read_bytes())
    with caplog.at_level(logging.WARNING, logger="openimagen.text"):
        cache = TextEmbeddingCache(tmp_path)
    assert any(str(index) in r.getMessage() for r in caplog.records)
    assert cache.contains(minilm.cache_id, PROMPTS) == [False] * 3


def test_storage_precision_and_float16_overflow(tmp_path):
    cache = TextEmbeddingCache(tmp_path)
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(2, 3, 8, generator=generator)  # [B, L, D]
    embeddings[1, 0, 0] = 1.0e6  # beyond float16's largest finite value (65504)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    cache.put("test", ["x", "y"], embeddings, mask)
    x, y = cache.get("test", ["x", "y"])
    assert x.shape == (2, 8) and y.shape == (1, 8)
    assert torch.all((x - embeddings[0, :2]).abs() <= embeddings[0, :2].abs() * 2**-11 + 1e-7)
    assert torch.equal(y, embeddings[1, :1])  # kept in float32, exactly


def test_prompt_with_no_valid_tokens(tmp_path):
    cache = TextEmbeddingCache(tmp_path)
    cache.put("test", ["none"], torch.ones(1, 2, 4), torch.zeros(1, 2, dtype=torch.bool))
    (row,) = cache.get("test", ["none"])
    assert row.shape == (0, 4)


WRITER = textwrap.dedent(
    """
    import sys, torch
    from openimagen.text import TextEmbeddingCache
    cache = TextEmbeddingCache(sys.argv[1])
    for i in range(int(sys.argv[2])):
        rows = torch.full((1, i % 5 + 1, 8), float(i))
        cache.put("writer", [f"prompt {i}"], rows, torch.ones(1, i % 5 + 1, dtype=torch.bool))
    """
)


def test_reader_sees_only_complete_entries_while_another_process_writes(tmp_path):
    count = 40
    texts = [f"prompt {i}" for i in range(count)]
    reader = TextEmbeddingCache(tmp_path)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(count)])
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while len(seen) < count and time.monotonic() < deadline:
        for i, row in enumerate(reader.get("writer", texts)):
            if row is not None:
                assert torch.equal(row, torch.full((i % 5 + 1, 8), float(i)))
                seen.add(i)
    assert writer.wait(timeout=30) == 0
    assert len(seen) == count


# -- an encoder's identity (text/cache.py owns what a cache_id is made of) --------------------
def test_fingerprint_follows_the_defining_files_not_the_location(tmp_path):
    from openimagen.text.cache import fingerprint_directory

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "t5"}')
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    first = fingerprint_directory(model)
    moved = tmp_path / "elsewhere" / "model"
    moved.parent.mkdir()
    model.rename(moved)
    assert fingerprint_directory(moved) == first  # moving or copying keeps the cache
    (moved / "README.md").write_text("notes")  # not a file that defines the computation
    assert fingerprint_directory(moved) == first
    (moved / "vocab.txt").write_text("[PAD]\n")  # a tokenizer file does
    with_vocab = fingerprint_directory(moved)
    assert with_vocab != first
    (moved / "model.safetensors").write_bytes(bytes(range(256)) * 63 + bytes(256))
    assert fingerprint_directory(moved) != with_vocab


def test_large_weights_are_sampled_so_an_edit_in_a_sampled_block_shows(tmp_path):
    from openimagen.text.cache import fingerprint_directory

    (tmp_path / "model.bin").write_bytes(bytes(3 << 20))  # 3 MiB, above the limit below
    before = fingerprint_directory(tmp_path, full_hash_limit=1 << 20)
    with open(tmp_path / "model.bin", "r+b") as handle:
        handle.seek((3 << 20) - 10)  # inside the last MiB, which is always read
        handle.write(b"\x01")
    assert fingerprint_directory(tmp_path, full_hash_limit=1 << 20) != before


def test_encoder_cache_id_names_type_width_length_dtype(tmp_path):
    from openimagen.text.cache import encoder_cache_id, fingerprint_directory

    (tmp_path / "config.json").write_text("{}")

    class Config:  # the two fields of a transformers config the id reads
        model_type, hidden_size = "bert", 384

    cache_id = encoder_cache_id(Config(), 48, torch.bfloat16, tmp_path, str(tmp_path))
    assert cache_id == f"bert-384-L48-bfloat16-{fingerprint_directory(tmp_path)[:16]}"
