"""Encoding through the cache: ``encode_with_cache`` (training, sampling), ``fill_cache``.

``fill_cache`` is ``openimagen encode-text``: it streams the prompts in chunks (memory
does not grow with their number), skips those already stored, encodes the rest in
batches and stores them a shard (``shard_size`` prompts) at a time. Every shard is
committed as it is written, so an interrupted run, run again, encodes only what was not
stored; on an exception (Ctrl-C included) the rows already encoded are stored first.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Iterator, Sequence

import torch

from openimagen.errors import InvalidArgumentError
from openimagen.text.cache.rows import pad, unpad
from openimagen.text.cache.store import TextEmbeddingCache
from openimagen.text.encoder import TextEncoder, check_texts


def encode_with_cache(
    encoder: TextEncoder,
    texts: Sequence[str],
    cache: TextEmbeddingCache | None,
    *,
    one_by_one: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``encoder.encode(texts)`` reading what it can from ``cache`` and storing the rest.

    Returns embeddings [B, L, D] float32 and mask [B, L] bool, right-padded to the longest
    prompt, on the encoder's device. With a cache, fresh embeddings are rounded to the
    storage precision too, so a prompt gives identical values whether it was a hit or not.
    The prompts not found are stored as one shard. ``one_by_one`` encodes each of them on
    its own, so its embedding never depends on which prompts shared its batch.
    """
    texts = check_texts(texts)
    device = getattr(encoder, "device", None)
    dtype = cache.dtype if cache is not None else torch.float32
    if cache is None and not one_by_one:
        return encoder.encode(texts)
    rows = cache.get(encoder.cache_id, texts) if cache is not None else [None] * len(texts)
    missing = list(dict.fromkeys(t for t, r in zip(texts, rows, strict=True) if r is None))
    if missing:
        fresh = encode_rows(encoder, missing, dtype, one_by_one=one_by_one)
        if cache is not None:
            cache.put_rows(encoder.cache_id, missing, fresh)
        by_text = dict(zip(missing, fresh, strict=True))
        rows = [by_text[t] if r is None else r for t, r in zip(texts, rows, strict=True)]
    return pad(rows, dim=encoder.dim, device=device)


def encode_rows(
    encoder: TextEncoder, texts: list[str], dtype: torch.dtype, *, one_by_one: bool = False
) -> list[torch.Tensor]:
    """Unpadded rows [L_i, D] of ``texts`` at storage ``dtype`` (see :func:`unpad`)."""
    if one_by_one:
        return [unpad(*encoder.encode([t]), dtype, batch=1)[0] for t in texts]
    embeddings, mask = encoder.encode(texts)  # [M, L, D], [M, L]
    return unpad(embeddings, mask, dtype, batch=len(texts))


def fill_cache(
    encoder: TextEncoder,
    texts: Iterable[str],
    cache: TextEmbeddingCache,
    *,
    batch_size: int = 64,
    shard_size: int = 4096,
    progress: bool = True,
    total: int | None = None,
) -> int:
    """Encode every distinct prompt not yet in ``cache``; returns how many were encoded.

    ``texts`` may be any iterable (a file read line by line); it is read in chunks. Within
    a chunk prompts are sorted by length before batching, so a batch pads little. The bar
    counts prompts read (``total``: how many there are, if ``texts`` has no ``len``).
    """
    from tqdm.auto import tqdm

    for name, value in (("batch_size", batch_size), ("shard_size", shard_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(name, value, "an integer >= 1")
    if total is None and isinstance(texts, Sequence):
        total = len(texts)
    encoded, read = 0, 0
    with tqdm(total=total, disable=not progress, unit="prompt", desc="encode-text") as bar:
        for chunk in _chunks(texts, max(shard_size, 16384)):
            chunk = check_texts(chunk)
            read += len(chunk)
            unique = list(dict.fromkeys(chunk))
            hits = cache.contains(encoder.cache_id, unique)
            missing = sorted((t for t, h in zip(unique, hits, strict=True) if not h), key=len)
            bar.update(len(chunk) - len(missing))
            encoded += _encode_and_store(encoder, missing, cache, batch_size, shard_size, bar)
            bar.set_postfix(new=encoded, refresh=False)
    if read == 0:
        raise InvalidArgumentError("texts", "nothing", "at least one prompt")
    return encoded


def _encode_and_store(
    encoder: TextEncoder, missing: list[str], cache: TextEmbeddingCache,
    batch_size: int, shard_size: int, bar,
) -> int:  # fmt: skip
    """Encode ``missing`` in batches, storing a shard every ``shard_size`` rows."""
    pending: list[str] = []
    rows: list[torch.Tensor] = []
    try:
        for start in range(0, len(missing), batch_size):
            batch = missing[start : start + batch_size]
            rows += encode_rows(encoder, batch, cache.dtype)
            pending += batch
            bar.update(len(batch))
            if len(pending) >= shard_size:
                cache.put_rows(encoder.cache_id, pending, rows)
                pending, rows = [], []
    except BaseException:
        if pending:  # interrupted: keep what was encoded; the first failure is reported
            with contextlib.suppress(Exception):
                cache.put_rows(encoder.cache_id, pending, rows)
        raise
    if pending:
        cache.put_rows(encoder.cache_id, pending, rows)
    return len(missing)


def _chunks(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    if isinstance(texts, str):
        check_texts(texts)  # raises: a bare string is not a list of prompts
    iterator = iter(texts)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


__all__ = ["encode_rows", "encode_with_cache", "fill_cache"]
