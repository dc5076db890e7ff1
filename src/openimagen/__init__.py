"""openimagen: an open implementation of Imagen (Saharia et al., 2022).

A frozen pretrained text encoder, a cascade of pixel-space diffusion U-Nets, classifier-free
guidance and dynamic thresholding. See docs/ARCHITECTURE.md for the map of the code.

Public API::

    import openimagen
    cascade = openimagen.load()                 # the bundled model, or load("path/to/dir")
    images = cascade.generate(["a red circle"], seeds=[0])   # [1, 3, H, W] in [-1, 1]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from openimagen.version import __version__

# Where the bundled shapes-world cascade lives once one is shipped (a model directory).
BUNDLED_MODEL_DIR = Path(__file__).parent / "assets" / "shapes-cascade"

if TYPE_CHECKING:
    import torch

    from openimagen.cascade import Cascade


def load(
    model: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    text_device: str | torch.device | None = None,
    offload: bool = False,
) -> Cascade:
    """Load a model directory (default: the bundled model) onto ``device`` (default: auto).

    ``dtype``, ``text_device`` and ``offload`` bound the memory a large model (DeepFloyd IF)
    needs: :meth:`openimagen.cascade.Cascade.load`.
    """
    from openimagen.cascade import Cascade

    return Cascade.load(
        resolve_model_dir(model), device=device, dtype=dtype, text_device=text_device,
        offload=offload,
    )  # fmt: skip


def resolve_model_dir(model: str | os.PathLike | None) -> Path:
    """``model`` as a path; ``None`` means the bundled model (a clear error if absent)."""
    from openimagen.errors import ModelDirectoryError

    if model is not None:
        return Path(model)
    if not (BUNDLED_MODEL_DIR / "cascade.json").is_file():
        raise ModelDirectoryError(
            "this openimagen has no bundled model yet; pass a model directory with --model DIR"
        )
    return BUNDLED_MODEL_DIR


__all__ = ["BUNDLED_MODEL_DIR", "__version__", "load", "resolve_model_dir"]
