"""Noise conditioning augmentation (diffusion/augmentation.py): the SR stage's low-res input."""

from __future__ import annotations

import torch

from openimagen.diffusion import get_schedule, prepare_lowres


def test_prepare_lowres_level_zero_is_plain_upsampling_and_high_level_is_noise():
    schedule = get_schedule("cosine")
    low = torch.rand(4, 3, 8, 8) * 2 - 1
    clean = prepare_lowres(low, 16, torch.zeros(4), schedule)
    assert clean.shape == (4, 3, 16, 16) and clean.abs().max() <= 1
    # downsampling the bicubic upsample recovers the input closely
    back = torch.nn.functional.avg_pool2d(clean, 2)
    assert (back - low).abs().mean() < 0.2
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    noisy = prepare_lowres(low, 16, torch.full((4,), 0.999), schedule, gens)
    assert abs(noisy.std().item() - 1.0) < 0.1  # alpha ~ 0: almost pure unit noise
    assert (noisy - clean).abs().mean() > 0.5


def test_prepare_lowres_noise_depends_only_on_each_samples_generator():
    schedule = get_schedule("cosine")
    low = torch.rand(3, 3, 8, 8) * 2 - 1
    level = torch.full((3,), 0.3)
    both = prepare_lowres(
        low, 16, level, schedule, [torch.Generator().manual_seed(s) for s in (5, 6, 7)]
    )
    one = prepare_lowres(low[1:2], 16, level[:1], schedule, [torch.Generator().manual_seed(6)])
    assert torch.equal(both[1], one[0])
