"""Run-time device choice: CUDA when present, else CPU. Never hard-coded elsewhere."""

from __future__ import annotations

import torch

from openimagen.errors import InvalidArgumentError


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"`` picks CUDA if available, else CPU; otherwise validates the name."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidArgumentError("device", device, "'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError(
            "device", str(device), "a device present on this machine", "Use --device cpu."
        )
    return resolved
