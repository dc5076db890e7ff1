"""Exponential moving average of the weights, with warmup.

Diffusion models are sampled from an EMA of their weights (Imagen, following Ho et al. 2020
and Song et al. 2021). Early in training a decay of 0.9999 would average mostly the random
initialisation, so the effective decay is warmed up as
decay_n = min(decay, (1 + n) / (warmup + n)), n = number of updates so far.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel


def ema_decay_at(n: int, decay: float, warmup: int) -> float:
    """The decay used for update number ``n`` (0-based)."""
    if warmup <= 0:
        return decay
    return min(decay, (1.0 + n) / (warmup + n))


def make_ema(model: torch.nn.Module, decay: float, warmup: int) -> AveragedModel:
    """An ``AveragedModel`` of ``model`` (buffers averaged too) with a warmed-up EMA decay."""

    def multi_avg_fn(
        averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor
    ) -> None:
        # AveragedModel copies the weights at its first update (n = 0), then calls this with
        # n = 1, 2, ... once per device and dtype group; the update count since that copy is
        # n - 1. One host read of n and one fused in-place update per group (on CUDA a
        # per-tensor avg_fn would sync once per parameter).
        d = ema_decay_at(int(n) - 1, decay, warmup)
        torch._foreach_lerp_(averaged, current, 1.0 - d)

    ema = AveragedModel(model, multi_avg_fn=multi_avg_fn, use_buffers=True)
    ema.requires_grad_(False)
    ema.eval()
    return ema


__all__ = ["ema_decay_at", "make_ema"]
