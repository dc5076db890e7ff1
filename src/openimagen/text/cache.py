"""On-disk cache of text embeddings, keyed by text encoder and prompt.

Imagen keeps its text encoder frozen, so the embeddings of the training captions can be
computed once and read back from disk (Saharia et al., 2022, who precompute the T5-XXL
embeddings). ``openimagen encode-text`` fills this cache; training and sampling read it
through :func:`encode_with_cache`, which encodes only the prompts it does not find.

Layout (plain files; nothing is ever rewritten in place)::

    DIR/shards/<time>-<random>.safetensors   one tensor per prompt, [L_i, D], unpadded
    DIR/shards/<time>-<random>.json          the shard's index: format, cache_id, key -> prompt

Each :meth:`TextEmbeddingCache.put` writes one new shard and then its index, each through
a temporary file and an atomic rename, so readers in other processes see a shard only once
it is complete, and several writers never touch the same file. Tensor names are
``sha256(cache_id + "\\0" + prompt)``. Embeddings are stored as float16 (half the disk of
float32, relative rounding error at most 2**-11, far below what a frozen encoder's output
is trusted to); a prompt whose values exceed float16's range is stored as float32.

A damaged index or shard (unreadable JSON, truncated or garbled safetensors header) is
skipped with a warning naming the file; its prompts count as missing and are encoded again
into a new shard. Damaged files are left in place for the user to delete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from openimagen.errors import InvalidArgumentError, InvalidTypeError, ShapeError
from openimagen.fileio import atomic_save_file, atomic_write_json
from openimagen.text.encoder import TextEncoder, check_texts

logger = logging.getLogger(__name__)

FORMAT_NAME = "openimagen-text-cache"
FORMAT_VERSION = 1
_STORE_DTYPES = (torch.float16, torch.float32)


def cache_key(cache_id: str, text: str) -> str:
    """The tensor name of one prompt: sha256 of ``cache_id + "\\0" + text`` (hex)."""
    return hashlib.sha256(f"{cache_id}\0{text}".encode()).hexdigest()


class TextEmbeddingCache:
    """Unpadded text embeddings on disk, by ``(encoder.cache_id, prompt)``.

    Args:
        directory: the cache directory (created on the first :meth:`put`).
        dtype: storage dtype, ``torch.float16`` (default) or ``torch.float32``.
    """

    def __init__(self, directory: str | os.PathLike, *, dtype: torch.dtype = torch.float16):
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise InvalidArgumentError(
                "cache directory", str(directory), "a directory", "Choose a directory path."
            )
        if dtype not in _STORE_DTYPES:
            raise InvalidArgumentError("dtype", dtype, "torch.float16 or torch.float32")
        self.dtype = dtype
        self._where: dict[str, Path] = {}  # key -> shard file holding it (newest wins)
        self._indexes_read: set[str] = set()  # index files already read, good or damaged
        self.refresh()

    @property
    def shard_directory(self) -> Path:
        return self.directory / "shards"

    def __len__(self) -> int:
        """Number of (cache_id, prompt) entries currently known."""
        return len(self._where)

    def refresh(self) -> None:
        """Read the indexes of shards written since the last look (by any process)."""
        if not self.shard_directory.is_dir():
            return
        new = sorted(
            p
            for p in self.shard_directory.glob("*.json")
            if not p.name.startswith(".") and p.name not in self._indexes_read
        )
        for index_path in new:  # sorted by time prefix, so a later shard overrides
            self._indexes_read.add(index_path.name)
            try:
                keys, shard_path = _read_index(index_path)
            except _DamagedError as exc:
                logger.warning(
                    "text cache: ignoring damaged file %s (%s); its prompts will be encoded "
                    "again. Delete it to silence this warning.",
                    exc.path,
                    exc.reason,
                )
                continue
            for key in keys:
                self._where[key] = shard_path

    def contains(self, cache_id: str, texts: Sequence[str]) -> list[bool]:
        """Whether each prompt has an entry for this ``cache_id``."""
        texts = check_texts(texts)
        keys = [cache_key(cache_id, t) for t in texts]
        if not all(k in self._where for k in keys):
            self.refresh()
        return [k in self._where for k in keys]

    def get(self, cache_id: str, texts: Sequence[str]) -> list[torch.Tensor | None]:
        """Each prompt's stored embeddings, [L_i, D] float32 on the CPU, or None if absent."""
        texts = check_texts(texts)
        keys = [cache_key(cache_id, t) for t in texts]
        if not all(k in self._where for k in keys):
            self.refresh()
        by_shard: dict[Path, list[str]] = {}
        for key in dict.fromkeys(keys):
            if key in self._where:
                by_shard.setdefault(self._where[key], []).append(key)
        found: dict[str, torch.Tensor] = {}
        for shard_path, shard_keys in by_shard.items():
            try:
                found.update(_read_tensors(shard_path, shard_keys))
            except _DamagedError as exc:
                logger.warning(
                    "text cache: ignoring damaged file %s (%s); its prompts will be encoded "
                    "again. Delete it to silence this warning.",
                    exc.path,
                    exc.reason,
                )
                self._forget(shard_path)
        return [found.get(k) for k in keys]

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
        if not isinstance(cache_id, str) or not cache_id:
            raise InvalidTypeError("cache_id", cache_id, "a non-empty string")
        texts = check_texts(texts)
        rows = unpad(embeddings, mask, self.dtype, batch=len(texts))
        entries = {cache_key(cache_id, t): (t, r) for t, r in zip(texts, rows, strict=True)}
        name = f"{time.time_ns():020d}-{secrets.token_hex(4)}"
        shard_path = self.shard_directory / f"{name}.safetensors"
        # The shard first, then its index: a reader that finds the index finds the shard.
        atomic_save_file(
            {key: row for key, (_, row) in entries.items()},
            shard_path,
            metadata={"format": FORMAT_NAME, "cache_id": cache_id},
        )
        atomic_write_json(
            self.shard_directory / f"{name}.json",
            {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "cache_id": cache_id,
                "shard": shard_path.name,
                "entries": {key: text for key, (text, _) in entries.items()},
            },
        )
        self._indexes_read.add(f"{name}.json")
        for key in entries:
            self._where[key] = shard_path

    def _forget(self, shard_path: Path) -> None:
        for key in [k for k, p in self._where.items() if p == shard_path]:
            del self._where[key]


def unpad(
    embeddings: torch.Tensor, mask: torch.Tensor, dtype: torch.dtype, *, batch: int
) -> list[torch.Tensor]:
    """Rows ``embeddings[i][mask[i]]`` on the CPU in the storage ``dtype``.

    float16 rows whose values overflow float16 are kept in float32 instead.
    """
    if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 3:
        shape = tuple(getattr(embeddings, "shape", ()))
        raise ShapeError("embeddings", shape, "[B, L, D]")
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(embeddings.shape[:2]):
        raise ShapeError("mask", tuple(getattr(mask, "shape", ())), "[B, L] matching embeddings")
    if embeddings.shape[0] != batch:
        raise ShapeError("embeddings", tuple(embeddings.shape), f"[{batch}, L, D] (one per text)")
    embeddings, mask = embeddings.detach().float().cpu(), mask.detach().bool().cpu()
    rows = []
    for row, valid in zip(embeddings, mask, strict=True):
        row = row[valid]  # [L_i, D]
        stored = row.to(dtype)
        if not torch.isfinite(stored).all() and torch.isfinite(row).all():
            stored = row  # beyond float16's range: keep float32
        rows.append(stored.contiguous())
    return rows


def encode_with_cache(
    encoder: TextEncoder, texts: Sequence[str], cache: TextEmbeddingCache | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``encoder.encode(texts)`` reading what it can from ``cache`` and storing the rest.

    Returns embeddings [B, L, D] float32 and mask [B, L] bool, right-padded to the longest
    prompt, on the encoder's device. With a cache, fresh embeddings are rounded to the
    storage precision too, so a prompt gives identical values whether it was a hit or not.
    """
    texts = check_texts(texts)
    if cache is None:
        return encoder.encode(texts)
    rows = cache.get(encoder.cache_id, texts)
    missing = list(dict.fromkeys(t for t, r in zip(texts, rows, strict=True) if r is None))
    if missing:
        embeddings, mask = encoder.encode(missing)  # [M, L, D], [M, L]
        cache.put(encoder.cache_id, missing, embeddings, mask)
        fresh = dict(
            zip(missing, unpad(embeddings, mask, cache.dtype, batch=len(missing)), strict=True)
        )
        rows = [fresh[t] if r is None else r for t, r in zip(texts, rows, strict=True)]
    return pad(rows, dim=encoder.dim, device=getattr(encoder, "device", None))


def pad(
    rows: Sequence[torch.Tensor], *, dim: int, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack unpadded rows [L_i, D] into (embeddings [B, L, D] float32, mask [B, L] bool)."""
    length = max([1] + [r.shape[0] for r in rows])
    embeddings = torch.zeros(len(rows), length, dim)  # [B, L, D]
    mask = torch.zeros(len(rows), length, dtype=torch.bool)  # [B, L]
    for i, row in enumerate(rows):
        if row.ndim != 2 or row.shape[1] != dim:
            raise ShapeError(f"rows[{i}]", tuple(row.shape), f"[L, {dim}]")
        embeddings[i, : row.shape[0]] = row.float()
        mask[i, : row.shape[0]] = True
    return embeddings.to(device or "cpu"), mask.to(device or "cpu")


def fill_cache(
    encoder: TextEncoder,
    texts: Sequence[str],
    cache: TextEmbeddingCache,
    *,
    batch_size: int = 64,
    progress: bool = True,
) -> int:
    """Encode every distinct prompt not yet in ``cache``; returns how many were encoded.

    Prompts are sorted by length before batching, so a batch pads little.
    """
    from tqdm.auto import tqdm

    texts = check_texts(texts)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError("batch_size", batch_size, "an integer >= 1")
    unique = list(dict.fromkeys(texts))
    hits = cache.contains(encoder.cache_id, unique)
    missing = sorted((t for t, hit in zip(unique, hits, strict=True) if not hit), key=len)
    with tqdm(total=len(missing), disable=not progress, unit="prompt", desc="encode-text") as bar:
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            embeddings, mask = encoder.encode(chunk)  # [b, L, D], [b, L]
            cache.put(encoder.cache_id, chunk, embeddings, mask)
            bar.update(len(chunk))
    return len(missing)


class _DamagedError(Exception):
    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _read_index(index_path: Path) -> tuple[list[str], Path]:
    """Keys and shard path of one index; the shard's header must list every key."""
    from safetensors import SafetensorError, safe_open

    try:
        index: Any = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _DamagedError(index_path, f"unreadable index: {exc}") from exc
    if (
        not isinstance(index, dict)
        or index.get("format") != FORMAT_NAME
        or not isinstance(index.get("shard"), str)
        or not isinstance(index.get("entries"), dict)
    ):
        raise _DamagedError(index_path, f"not a {FORMAT_NAME} index")
    if index.get("version") != FORMAT_VERSION:
        raise _DamagedError(
            index_path, f"format version {index.get('version')!r}, expected {FORMAT_VERSION}"
        )
    shard_path = index_path.parent / Path(index["shard"]).name
    keys = list(index["entries"])
    try:
        with safe_open(shard_path, framework="pt") as handle:
            missing = set(keys) - set(handle.keys())
    except (OSError, SafetensorError) as exc:
        raise _DamagedError(shard_path, f"unreadable shard: {exc}") from exc
    if missing:
        raise _DamagedError(shard_path, f"{len(missing)} entries of its index are missing")
    return keys, shard_path


def _read_tensors(shard_path: Path, keys: list[str]) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(shard_path, framework="pt") as handle:
            tensors = {k: handle.get_tensor(k).float() for k in keys}  # each [L_i, D]
    except (OSError, SafetensorError) as exc:
        raise _DamagedError(shard_path, f"unreadable shard: {exc}") from exc
    for key, tensor in tensors.items():
        if tensor.ndim != 2:
            raise _DamagedError(shard_path, f"entry {key[:12]} has shape {tuple(tensor.shape)}")
    return tensors


# -- an encoder's identity (its cache_id); the files that define what it computes -----------
_FINGERPRINT_FILES = frozenset(
    "config.json tokenizer.json tokenizer_config.json special_tokens_map.json added_tokens.json "  # noqa: SIM905
    "spiece.model sentencepiece.bpe.model vocab.txt vocab.json merges.txt".split()
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")


def encoder_cache_id(
    config: Any, max_length: int, dtype: torch.dtype, directory: Path | None, source: str
) -> str:
    """A Hugging Face encoder's ``cache_id``: ``{model_type}-{dim}-L{max_length}-{dtype}-{fp}``.

    The fingerprint hashes the files that define the computation (config, tokenizer files,
    weights), not their location, so a moved or copied model keeps its cached embeddings.
    """
    if directory is None:  # pragma: no cover - needs a hub: the local snapshot it came from
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source, "config.json")
        directory = Path(found).parent if isinstance(found, str) else None
    if directory is not None:
        fingerprint = fingerprint_directory(directory)
    else:  # pragma: no cover - needs a hub; the config alone is a weak but safe-side key
        fingerprint = hashlib.sha256(config.to_json_string().encode()).hexdigest()
    dtype_name = str(dtype).removeprefix("torch.")
    return f"{config.model_type}-{config.hidden_size}-L{max_length}-{dtype_name}-{fingerprint[:16]}"


def fingerprint_directory(directory: Path, *, full_hash_limit: int = 8 << 20) -> str:
    """sha256 over the names and contents of a model directory's defining files.

    Files up to ``full_hash_limit`` bytes are hashed whole. Larger ones (weights) are
    hashed by size plus the first and last MiB and 32 evenly spaced 64 KiB samples: about
    4 MiB read per file, so a 10 GB T5-XXL encoder is fingerprinted in milliseconds. A
    retrained or fine-tuned model changes its bytes throughout; an edit confined to
    unsampled bytes would go unnoticed (then clear the cache or use a new directory).
    """
    digest = hashlib.sha256()
    files = sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and (p.name in _FINGERPRINT_FILES or p.name.endswith(_WEIGHT_SUFFIXES))
    )
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}\0{size}\0".encode())
        with open(path, "rb") as handle:
            if size <= full_hash_limit:
                digest.update(handle.read())
                continue
            mib, chunk, samples = 1 << 20, 64 << 10, 32
            reads = [(0, mib), (size - mib, mib)] + [
                (mib + k * (size - 2 * mib - chunk) // (samples - 1), chunk) for k in range(samples)
            ]
            for offset, length in reads:
                handle.seek(offset)
                digest.update(handle.read(length))
    return digest.hexdigest()


__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "TextEmbeddingCache",
    "cache_key",
    "encode_with_cache",
    "encoder_cache_id",
    "fill_cache",
    "fingerprint_directory",
    "pad",
    "unpad",
]
