"""Anti-aliased rendering of layouts: exact covered-area averages per pixel."""

from __future__ import annotations

import math

import numpy as np
import torch

from openimagen.data.shapes.layout import Layout, sample_layout
from openimagen.data.shapes.spec import BACKGROUND_COLORS, OBJECT_COLORS, ShapeSpec
from openimagen.data.shapes.world import ShapesConfig
from openimagen.errors import InvalidArgumentError


def _inside(shape: str, x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    if shape == "square":
        return (np.abs(x - cx) <= r) & (np.abs(y - cy) <= r)
    # upright isosceles triangle: apex (cx, cy - r), base from (cx - r, cy + r) to (cx + r, cy + r)
    return (y <= cy + r) & (np.abs(x - cx) <= (y - cy + r) / 2)


def coverage(
    shape: str,
    cx: float,
    cy: float,
    radius: float,
    resolution: int,
    box: tuple[int, int, int, int],
    supersample: int,
) -> np.ndarray:
    """Fraction of each pixel of ``box`` = (x0, x1, y0, y1) covered by the shape: [y1-y0, x1-x0].

    ``(cx, cy)`` is the bounding-box centre in normalized units; coverage is the average
    over a ``supersample`` x ``supersample`` grid of points inside each pixel.
    """
    x0, x1, y0, y1 = box
    ss = supersample
    xs = (np.arange(x0 * ss, x1 * ss) + 0.5) / (ss * resolution)  # [w*ss] sub-sample centres
    ys = (np.arange(y0 * ss, y1 * ss) + 0.5) / (ss * resolution)  # [h*ss]
    inside = _inside(shape, xs[None, :], ys[:, None], cx, cy, radius)  # [h*ss, w*ss]
    return inside.reshape(y1 - y0, ss, x1 - x0, ss).mean(axis=(1, 3), dtype=np.float32)


def default_supersample(resolution: int) -> int:
    return max(2, min(8, 512 // resolution))


def render_layout(layout: Layout, resolution: int, *, supersample: int | None = None) -> np.ndarray:
    """Anti-aliased render: [H, W, 3] float32 in [0, 1]; each pixel is its covered-area average."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
        raise InvalidArgumentError("resolution", resolution, "an integer >= 8")
    ss = supersample or default_supersample(resolution)
    image = np.empty((resolution, resolution, 3), dtype=np.float32)
    image[:] = np.asarray(BACKGROUND_COLORS[layout.background], dtype=np.float32) / 255
    for obj in layout.objects:
        x0 = max(0, int(math.floor((obj.cx - obj.radius) * resolution)) - 1)
        x1 = min(resolution, int(math.ceil((obj.cx + obj.radius) * resolution)) + 1)
        y0 = max(0, int(math.floor((obj.cy - obj.radius) * resolution)) - 1)
        y1 = min(resolution, int(math.ceil((obj.cy + obj.radius) * resolution)) + 1)
        cover = coverage(obj.shape, obj.cx, obj.cy, obj.radius, resolution, (x0, x1, y0, y1), ss)
        color = np.asarray(OBJECT_COLORS[obj.color], dtype=np.float32) / 255
        region = image[y0:y1, x0:x1]
        image[y0:y1, x0:x1] = region * (1 - cover[..., None]) + color * cover[..., None]
    return image


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).contiguous() * 2 - 1  # [3, H, W] in [-1, 1]


def render(
    spec: ShapeSpec,
    resolution: int,
    *,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    config: ShapesConfig | None = None,
) -> torch.Tensor:
    """Render ``spec`` with a random layout: [3, H, W] float in [-1, 1]. Give ``seed`` or ``rng``."""
    if (seed is None) == (rng is None):
        raise InvalidArgumentError("seed/rng", (seed, rng), "exactly one of seed or rng")
    rng = rng if rng is not None else np.random.default_rng(seed)
    layout = sample_layout(spec, rng, config or ShapesConfig())
    return to_tensor(render_layout(layout, resolution))
