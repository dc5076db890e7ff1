"""A tiny deterministic text encoder and the child processes of the cache's crash tests."""

from __future__ import annotations

import hashlib
import os
import signal
import sys

import torch

DIM = 8


def expected_row(text: str) -> torch.Tensor:
    """The embedding FakeEncoder gives ``text``: [1 + len(text) % 6, DIM], exact in float16."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
    length = 1 + len(text) % 6
    base = torch.arange(length * DIM, dtype=torch.float32).reshape(length, DIM)
    return (base + seed % 1000) / 8  # multiples of 1/8 below 2048: exact in float16


class FakeEncoder:
    """A text encoder whose output is a function of each prompt alone; it counts its calls.

    ``fail_after``: raise ``KeyboardInterrupt`` on that call (1-based), as Ctrl-C would.
    """

    name, dim, max_length, cache_id, device = "fake", DIM, 8, "fake-8", torch.device("cpu")

    def __init__(self, fail_after: int | None = None, cache_id: str = "fake-8"):
        self.calls: list[list[str]] = []
        self.fail_after, self.cache_id = fail_after, cache_id

    def encode(self, texts):
        if self.fail_after is not None and len(self.calls) + 1 >= self.fail_after:
            raise KeyboardInterrupt
        self.calls.append(list(texts))
        rows = [expected_row(t) for t in texts]
        length = max(r.shape[0] for r in rows)
        embeddings = torch.zeros(len(rows), length, DIM)  # [B, L, D]
        mask = torch.zeros(len(rows), length, dtype=torch.bool)  # [B, L]
        for i, row in enumerate(rows):
            embeddings[i, : len(row)], mask[i, : len(row)] = row, True
        return embeddings, mask

    @property
    def encoded(self) -> list[str]:
        return [t for call in self.calls for t in call]


def batch_texts(writer: int, batch: int, size: int = 5) -> list[str]:
    return [f"writer {writer} batch {batch} prompt {k}" for k in range(size)]


def write_batches(
    directory: str, writer: int, batches: int, shared: int = 0, compact_every: int = 1 << 16
) -> list[int]:
    """A writer process: ``batches`` puts through encode_with_cache; returns encoded counts.

    The first ``shared`` prompts of each batch are the same in every writer (they race).
    """
    from openimagen.text import TextEmbeddingCache, encode_with_cache

    cache = TextEmbeddingCache(directory, compact_every=compact_every)
    encoder = FakeEncoder()
    for b in range(batches):
        texts = [f"shared batch {b} prompt {k}" for k in range(shared)] + batch_texts(writer, b)
        embeddings, mask = encode_with_cache(encoder, texts, cache)
        for i, text in enumerate(texts):  # what the writer got back is right, hit or miss
            assert torch.equal(embeddings[i][mask[i]], expected_row(text)), text
    return [len(c) for c in encoder.calls]


def killed_writer(directory: str, batches: int, kill_in: str) -> None:
    """Write ``batches`` batches, printing each commit, then die by SIGKILL inside the next.

    ``kill_in``: "journal" (half the commit record written), "shard" (the shard's
    temporary file written, not renamed), "index" (the batch committed, then killed half
    way through writing a run of the on-disk index), or "none" (loop until killed from
    outside).
    """
    from openimagen.text import TextEmbeddingCache
    from openimagen.text.cache import journal, runs

    cache = TextEmbeddingCache(directory, compact_every=8 if kill_in == "index" else 1 << 16)
    encoder = FakeEncoder()

    def die_in_run(self, hashes, locations):
        real_append(self, hashes[: len(hashes) // 2], locations[: len(hashes) // 2])
        os.fsync(self.fd)
        os.kill(os.getpid(), signal.SIGKILL)

    real_append = runs.RunWriter.append

    def die_half_written(fd, data):
        os.write(fd, data[: len(data) // 2])
        os.fsync(fd)
        os.kill(os.getpid(), signal.SIGKILL)

    def die_before_rename(*args):
        os.kill(os.getpid(), signal.SIGKILL)

    b = 0
    while kill_in == "none" or b <= batches:
        if b == batches and kill_in == "journal":
            journal.write_all = die_half_written
        if b == batches and kill_in == "shard":
            os.replace = die_before_rename
        if b == batches and kill_in == "index":
            runs.RunWriter.append = die_in_run
            cache.compact_every = 1  # this put writes the index
        texts = batch_texts(0, b, size=1 + b % 7)
        cache.put(encoder.cache_id, texts, *encoder.encode(texts))
        print(f"committed {b}", flush=True)
        b += 1
    sys.exit(0)


if __name__ == "__main__":
    killed_writer(sys.argv[1], int(sys.argv[2]), sys.argv[3])
