"""Cache keys and the rows the cache stores: one prompt's valid tokens, [L_i, D].

A prompt's key is ``sha256(cache_id + "\\0" + prompt)``. The in-memory index holds its
first 8 bytes (a 64-bit hash); each shard stores the first 16 bytes of every key it holds,
so a 64-bit collision is caught when the row is read (it counts as a miss, never as another
prompt's embedding).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from openimagen.errors import ShapeError


def cache_key(cache_id: str, text: str) -> str:
    """The key of one prompt: sha256 of ``cache_id + "\\0" + text`` (hex)."""
    return hashlib.sha256(f"{cache_id}\0{text}".encode()).hexdigest()


def key_digests(cache_id: str, texts: Sequence[str]) -> np.ndarray:
    """The first 16 bytes of each prompt's key as two little-endian uint64: [N, 2]."""
    prefix = f"{cache_id}\0".encode()
    raw = b"".join(hashlib.sha256(prefix + t.encode()).digest()[:16] for t in texts)
    return np.frombuffer(raw, dtype="<u8").reshape(len(texts), 2)


def hex_digest(key: str) -> np.ndarray:
    """A hex key (:func:`cache_key`, the version-1 tensor names) as its [2] uint64 digest."""
    return np.frombuffer(bytes.fromhex(key)[:16], dtype="<u8").copy()


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
    stored = embeddings.to(dtype)  # [B, L, D], all rows at once
    valid = mask[:, :, None]  # [B, L, 1]
    # beyond float16's range (finite in float32, not in float16): such a row stays float32
    overflow = ((~torch.isfinite(stored) & valid).flatten(1).any(1)) & (
        (torch.isfinite(embeddings) | ~valid).flatten(1).all(1)
    )  # [B]
    lengths = mask.sum(1).tolist()
    rows = list(torch.split(stored[mask], lengths))  # B x [L_i, D], views of one tensor
    for i in torch.nonzero(overflow).flatten().tolist():
        rows[i] = embeddings[i][mask[i]].contiguous()
    return rows


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


__all__ = ["cache_key", "hex_digest", "key_digests", "pad", "unpad"]
