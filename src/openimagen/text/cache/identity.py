"""An encoder's identity, its ``cache_id``: the files that define what it computes.

The cache keys every entry by ``sha256(cache_id + "\\0" + prompt)``, so embeddings of one
encoder are never served for another (another model, width, ``max_length`` or dtype).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

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


__all__ = ["encoder_cache_id", "fingerprint_directory"]
