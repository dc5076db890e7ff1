"""Noise conditioning augmentation of a super-resolution stage's low-res input.

Imagen (Saharia et al., 2022, sec. 2.5) corrupts the upsampled low-res image an SR stage is
conditioned on with Gaussian noise at a level ``a`` and tells the network ``a``; in training
``a`` is drawn at random, at sampling time it is fixed (Ho et al. 2022, "Cascaded Diffusion
Models", sec. 4.1). Training (``train/step.py``) and sampling (``cascade/stage.py``) both
call :func:`prepare_lowres`, so the two corrupt the input in exactly the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from openimagen.diffusion.samplers import randn_per_sample
from openimagen.diffusion.schedule import alpha_sigma
from openimagen.errors import InvalidArgumentError

#: How the low-res image is brought to the SR stage's size: "bicubic" (openimagen's stages:
#: bicubic, clamped to [-1, 1]) or "bilinear-aligned" (DeepFloyd IF's stage II: bilinear with
#: align_corners=True, not clamped; diffusers' IFSuperResolutionPipeline).
RESIZE_MODES: tuple[str, ...] = ("bicubic", "bilinear-aligned")


def prepare_lowres(
    image: torch.Tensor,
    size: int,
    aug_level: torch.Tensor,
    schedule: Callable[[torch.Tensor], torch.Tensor],
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    *,
    resize: str = "bicubic",
) -> torch.Tensor:
    """Upsample a low-res image to ``size`` and apply noise conditioning augmentation.

    Shared by sampling and training so both corrupt the SR input the same way:
    z = alpha(a) * up(x) + sigma(a) * eps, with a the augmentation level used as a
    diffusion time (Imagen sec. 2.5; Ho et al. 2022, sec. 4.1, Gaussian augmentation).
    ``resize`` is one of :data:`RESIZE_MODES`.
    """
    if image.ndim != 4:
        raise InvalidArgumentError("image.shape", tuple(image.shape), "[B, C, H, W]")
    if resize not in RESIZE_MODES:
        raise InvalidArgumentError("resize", resize, "one of " + ", ".join(map(repr, RESIZE_MODES)))
    if resize == "bicubic":
        up = F.interpolate(image, size=(size, size), mode="bicubic", align_corners=False)
        up = up.clamp(-1.0, 1.0)  # bicubic overshoots; the SR net was trained on [-1, 1] inputs
    else:  # bilinear cannot overshoot
        up = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=True)
    aug_level = aug_level.to(device=up.device)  # [B], in its own precision: a float64 level
    if bool((aug_level == 0).all()):  # hits a discrete schedule's grid point exactly
        return up
    alpha, sigma = (v.to(up.dtype) for v in alpha_sigma(schedule(aug_level)))  # [B], [B]
    noise = randn_per_sample(up.shape, generator, device=up.device, dtype=up.dtype)
    return alpha.view(-1, 1, 1, 1) * up + sigma.view(-1, 1, 1, 1) * noise


__all__ = ["RESIZE_MODES", "prepare_lowres"]
