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


def prepare_lowres(
    image: torch.Tensor,
    size: int,
    aug_level: torch.Tensor,
    schedule: Callable[[torch.Tensor], torch.Tensor],
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> torch.Tensor:
    """Upsample a low-res image to ``size`` and apply noise conditioning augmentation.

    Shared by sampling and training so both corrupt the SR input the same way:
    z = alpha(a) * up(x) + sigma(a) * eps, with a the augmentation level used as a
    diffusion time (Imagen sec. 2.5; Ho et al. 2022, sec. 4.1, Gaussian augmentation).
    """
    if image.ndim != 4:
        raise InvalidArgumentError("image.shape", tuple(image.shape), "[B, C, H, W]")
    up = F.interpolate(image, size=(size, size), mode="bicubic", align_corners=False)
    up = up.clamp(-1.0, 1.0)  # bicubic overshoots; the SR net was trained on [-1, 1] inputs
    aug_level = aug_level.to(device=up.device, dtype=up.dtype)  # [B]
    if bool((aug_level == 0).all()):
        return up
    alpha, sigma = alpha_sigma(schedule(aug_level))  # [B], [B]
    noise = randn_per_sample(up.shape, generator, device=up.device, dtype=up.dtype)
    return alpha.view(-1, 1, 1, 1) * up + sigma.view(-1, 1, 1, 1) * noise


__all__ = ["prepare_lowres"]
