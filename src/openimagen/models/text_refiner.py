"""A few trainable transformer layers over the frozen encoder's projected tokens.

Imagen feeds the frozen T5's token states to every cross-attention through one linear
projection. A frozen encoder whose last layer has mixed a caption's words into each token
(MiniLM's, tuned for mean-pooled sentence similarity: docs/results.md, "the binding
probe") then leaves the U-Net no way to tell which colour word belongs to which shape
word. The refiner lets the image model re-read the token sequence, with positions, before
it attends to it: a token can gather what its neighbours say. It is trained with the
U-Net; the language model stays frozen and still supplies what each word means.

Each layer is torch's pre-norm ``nn.TransformerEncoderLayer`` with its two output
projections zeroed, so a new refiner is the identity: it can be added to a trained U-Net
(``train.init_from``) without changing what the U-Net draws at step 0.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _positions(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Sinusoidal position features [L, dim] (Vaswani et al. 2017); no maximum length."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=device) / half)
    angles = torch.arange(length, device=device)[:, None] * freqs[None]  # [L, half]
    return torch.cat([angles.sin(), angles.cos()], dim=1).to(dtype)


class TextRefiner(nn.Module):
    """``layers`` pre-norm transformer layers of width ``dim`` over a masked token sequence."""

    def __init__(self, dim: int, layers: int, head_dim: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                dim,
                dim // head_dim,
                dim_feedforward=2 * dim,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )  # fmt: skip
            for _ in range(layers)
        )
        for layer in self.layers:  # identity at initialisation
            for proj in (layer.self_attn.out_proj, layer.linear2):
                nn.init.zeros_(proj.weight)
                nn.init.zeros_(proj.bias)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """tokens [B, L, dim], mask [B, L] bool (True = a real token) -> [B, L, dim].

        Padding is never attended to; a row with no real token (a dropped caption) attends
        to all of its (zeroed) positions instead, so it stays finite; the caller masks it.
        """
        pos = _positions(tokens.shape[1], tokens.shape[2], tokens.device, tokens.dtype)
        ignore = ~mask & mask.any(dim=1, keepdim=True)  # [B, L]
        start = h = tokens + pos
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=ignore)
        return tokens + (h - start)  # what the layers added: exactly 0 while they add nothing


__all__ = ["TextRefiner"]
