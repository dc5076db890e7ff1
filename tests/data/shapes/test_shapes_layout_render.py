"""Layouts (no overlap, relations hold) and anti-aliased rendering."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from openimagen.data.shapes import (
    OBJECT_COLORS,
    Layout,
    PlacedObject,
    ShapeObject,
    ShapesConfig,
    ShapeSpec,
    render,
    render_layout,
    sample_layout,
)
from openimagen.errors import InvalidArgumentError


def test_data_unsatisfiable_layout_is_a_clear_error():
    # with radius 0.25, two large objects (0.5 wide plus the gap) cannot both fit
    config = ShapesConfig(small_radius=0.1, large_radius=0.25)
    spec = ShapeSpec(
        (ShapeObject("square", "red", "large"), ShapeObject("circle", "blue", "large"))
    )
    with pytest.raises(InvalidArgumentError, match="fit the image"):
        sample_layout(spec, np.random.default_rng(0), config, max_attempts=20)
    # one of them fits
    assert (
        len(
            sample_layout(
                spec.__class__(spec.objects[:1]), np.random.default_rng(0), config
            ).objects
        )
        == 1
    )


# -- layouts and rendering -------------------------------------------------------------------
def test_data_layouts_satisfy_relations_without_overlap():
    config = ShapesConfig()
    spec = ShapeSpec(
        (
            ShapeObject("triangle", "red", "large"),
            ShapeObject("circle", "blue", "large"),
            ShapeObject("square", "green"),
        ),
        ((0, "above", 1), (2, "right_of", 1)),
    )
    for seed in range(100):
        layout = sample_layout(spec, np.random.default_rng(seed), config)
        objs = layout.objects
        (ax, ay), (bx, by), (cx, _) = (o.centroid for o in objs)
        assert by - ay >= config.relation_margin  # y grows downwards: 0 above 1
        assert cx - bx >= config.relation_margin
        for i in range(3):
            lo, hi = (
                objs[i].radius + config.border - 1e-9,
                1 - objs[i].radius - config.border + 1e-9,
            )
            assert lo <= objs[i].cx <= hi and lo <= objs[i].cy <= hi
            for j in range(i):
                reach = objs[i].radius + objs[j].radius + config.min_gap
                assert (
                    max(abs(objs[i].cx - objs[j].cx), abs(objs[i].cy - objs[j].cy)) >= reach - 1e-9
                )


@pytest.mark.parametrize(
    ("shape", "factor"), [("circle", math.pi), ("square", 4.0), ("triangle", 2.0)]
)
def test_data_render_is_antialiased_with_exact_area(shape, factor):
    r = 0.137
    layout = Layout((PlacedObject(shape, "yellow", "large", 0.503, 0.481, r),), "black")
    image = render_layout(layout, 64)
    color = np.asarray(OBJECT_COLORS["yellow"]) / 255
    alpha = image @ color / (color @ color)  # coverage per pixel on black
    assert abs(alpha.sum() / 64**2 - factor * r * r) < 0.01 * factor * r * r
    fractional = ((alpha > 0.02) & (alpha < 0.98)).sum()
    assert fractional > 10  # anti-aliased edge pixels, not a hard mask
    assert alpha.min() >= -1e-6 and alpha.max() <= 1 + 1e-6


def test_data_same_scene_at_every_resolution():
    spec = ShapeSpec(
        (ShapeObject("circle", "red", "large"), ShapeObject("triangle", "green", "small"))
    )
    small = render(spec, 32, seed=3)  # [3, 32, 32]
    big = render(spec, 128, seed=3)  # [3, 128, 128]
    pooled = torch.nn.functional.avg_pool2d(big[None], 4)[0]
    assert small.shape == (3, 32, 32) and big.shape == (3, 128, 128)
    assert (pooled - small).abs().mean() < 0.01
    assert not torch.equal(render(spec, 32, seed=3), render(spec, 32, seed=4))
    with pytest.raises(InvalidArgumentError, match="seed/rng"):
        render(spec, 32)
