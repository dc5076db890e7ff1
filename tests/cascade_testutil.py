"""A tiny random cascade for the tests: two stages that sample in well under a second."""

from __future__ import annotations

import torch

from openimagen.cascade import Cascade, SamplingConfig, Stage, StageConfig
from openimagen.models.presets import get_preset

FAST = SamplingConfig(sampler="ddim", steps=3, guidance_weight=3.0, threshold="dynamic")


def tiny_cascade(encoder, *, base_res: int = 16, sr_res: int = 32, seed: int = 0) -> Cascade:
    """A random two-stage cascade small enough to sample in well under a second."""
    torch.manual_seed(seed)
    base = StageConfig(
        unet=get_preset("tiny-base", image_size=base_res, text_embed_dim=encoder.dim),
        resolution=base_res,
    )
    sr = StageConfig(
        unet=get_preset("tiny-sr", image_size=sr_res, text_embed_dim=encoder.dim),
        resolution=sr_res,
        lowres_resolution=base_res,
    )
    sr_sampling = FAST.replace(sampler="dpmpp_2m", noise_aug_level=0.2)
    return Cascade(encoder, [Stage(base), Stage(sr)], [FAST, sr_sampling], model_id="tiny")


def poisoned(minilm, stage: int, value: float) -> Cascade:
    """A tiny cascade with one weight of ``stage`` set to ``value`` (NaN, inf)."""
    broken = tiny_cascade(minilm)
    first = next(broken.stages[stage].unet.parameters())
    with torch.no_grad():
        first.view(-1)[0] = value
    return broken
