"""Read a shapes-world image back into objects, with no learned weights.

The steps, each a classical image-analysis operation:

1. background: the per-channel median of the one-pixel frame, named by the nearest
   background colour; the frame's median absolute deviation estimates the pixel noise,
   and a noisy image is smoothed with a Gaussian of 0.5 to 1.5 px first;
2. foreground: pixels farther from the background than half the distance to the nearest
   object colour, grouped into 8-connected components (``scipy.ndimage.label``); every
   pixel within a few pixels of a component, and nearer to it than to any other, is part
   of that object's region;
3. colour: the mean of the component's core pixels (the deepest half of its interior)
   is explained as background + a * (colour - background) with 0 <= a <= 1; the colour
   with the smallest residual wins, so blurred (partially covered) pixels keep their hue;
4. coverage: alpha = projection of (pixel - background) onto (colour - background) is the
   fraction of each pixel the object covers (exactly so on anti-aliased renders), so area
   and centroid are sub-pixel accurate and unbiased under zero-mean noise;
5. shape: for each shape, the ideal anti-aliased shape with the measured area and centroid,
   blurred by each sigma of a small grid, is compared with alpha over the region (least
   squares with a free amplitude); the best fit names the shape. This is the maximum-
   likelihood choice under Gaussian noise and is insensitive to blur;
6. size: from the radius implied by the area and the shape (area = k * r^2).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from openimagen.data.shapes import (
    AREA_FACTOR,
    BACKGROUND_COLORS,
    OBJECT_COLORS,
    SHAPES,
    ShapesConfig,
    coverage,
)
from openimagen.errors import InvalidArgumentError, InvalidTypeError, ShapeError

# Components whose area is below this fraction of the smallest object's area are noise.
_MIN_AREA_FRACTION = 0.35
# Blur levels (Gaussian sigma, px) tried when fitting the shape templates.
_BLUR_GRID = (0.0, 0.4, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0)


@dataclasses.dataclass(frozen=True)
class DetectedObject:
    """One object read from an image; positions are normalized (x right, y down, in [0, 1])."""

    shape: str
    color: str
    size: str
    cx: float  # centroid
    cy: float
    radius: float  # half the bounding-box side implied by area and shape
    blur: float  # Gaussian sigma (px) of the best-fitting template
    fit: float  # relative squared residual of that template (0 = perfect)

    def describe(self) -> str:
        return f"{self.size} {self.color} {self.shape} at ({self.cx:.2f}, {self.cy:.2f})"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Detection:
    objects: tuple[DetectedObject, ...]
    background: str

    def to_dict(self) -> dict[str, Any]:
        return {"background": self.background, "objects": [o.to_dict() for o in self.objects]}


def image_to_array(image: Any) -> np.ndarray:
    """A tensor [3, H, W] in [-1, 1], a PIL image or a uint8 array [H, W, 3] -> float [H, W, 3] in [0, 1]."""
    if isinstance(image, torch.Tensor):
        if image.ndim == 4 and image.shape[0] == 1:
            image = image[0]
        if image.ndim != 3 or image.shape[0] != 3:
            raise InvalidArgumentError("image.shape", tuple(image.shape), "[3, H, W]")
        array = (image.detach().float().cpu().clamp(-1, 1).permute(1, 2, 0).numpy() + 1) / 2
        return array.astype(np.float32)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise InvalidArgumentError("image.shape", image.shape, "[H, W, 3]")
        if image.dtype == np.uint8:
            return image.astype(np.float32) / 255
        return np.clip(image.astype(np.float32), 0, 1)
    raise InvalidTypeError("image", image, "a torch.Tensor [3, H, W], a PIL image or a numpy array")


def _nearest(rgb: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> str:
    names = list(palette)
    colors = np.asarray([palette[n] for n in names], dtype=np.float32) / 255
    return names[int(np.argmin(((colors - rgb) ** 2).sum(axis=1)))]


def _fit_shape(
    alpha: np.ndarray, region: np.ndarray, area: float, centre: tuple[float, float],
    origin: tuple[int, int], resolution: int,
) -> tuple[str, float, float]:  # fmt: skip
    """Best (shape, blur sigma in px, relative residual) for the alpha patch; positions in px."""
    target = alpha[region]
    norm = max(float(target @ target), 1e-9)
    height, width = alpha.shape
    y0, x0 = origin
    box = (x0, x0 + width, y0, y0 + height)
    best = ("circle", 0.0, math.inf)
    for shape in SHAPES:
        r = math.sqrt(area / AREA_FACTOR[shape])  # px
        cy_box = centre[1] - (r / 3 if shape == "triangle" else 0.0)
        cover = coverage(shape, centre[0] / resolution, cy_box / resolution, r / resolution,
                         resolution, box, 4)  # [h, w]  # fmt: skip
        previous = math.inf
        for sigma in _BLUR_GRID:
            pred = ndimage.gaussian_filter(cover, sigma, mode="constant") if sigma else cover
            p = pred[region]
            beta = float(target @ p) / max(float(p @ p), 1e-9)  # free amplitude
            err = float(((target - beta * p) ** 2).sum()) / norm
            if err < best[2]:
                best = (shape, sigma, err)
            if err > previous:
                break  # the misfit is unimodal in sigma: past the best blur
            previous = err
    return best


def detect(image: Any, config: ShapesConfig | None = None) -> Detection:
    """Detect the objects in one shapes-world image (see the module docstring for how)."""
    config = config or ShapesConfig()
    pixels = image_to_array(image)  # [H, W, 3] in [0, 1]
    height, width, _ = pixels.shape
    if height != width:
        raise ShapeError("image", pixels.shape, "a square image (shapes-world scenes are square)")
    resolution = height
    frame = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    bg = np.median(frame, axis=0)  # [3]
    noise = 1.4826 * float(np.median(np.abs(frame - bg)))
    if noise > 0.01:
        smoothing = min(1.5, max(0.5, 10 * noise))
        pixels = ndimage.gaussian_filter(pixels, sigma=(smoothing, smoothing, 0), mode="nearest")
    background = _nearest(bg, {k: BACKGROUND_COLORS[k] for k in config.backgrounds})
    names = list(config.colors)
    offsets = np.asarray([OBJECT_COLORS[k] for k in names], dtype=np.float32) / 255 - bg  # [K, 3]

    diff = pixels - bg  # [H, W, 3]
    dist = np.sqrt((diff**2).sum(axis=2))  # [H, W]
    threshold = 0.5 * float(np.sqrt((offsets**2).sum(axis=1)).min())
    labels, count = ndimage.label(dist > threshold, structure=np.ones((3, 3)))
    if count == 0:
        return Detection((), background)
    # every pixel's distance to, and label of, the nearest foreground component
    gap, (iy, ix) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    owner = labels[iy, ix]  # [H, W]
    pad = 3 + resolution // 64
    min_area = (
        _MIN_AREA_FRACTION * min(AREA_FACTOR.values()) * (config.small_radius * resolution) ** 2
    )
    radius_cut = math.sqrt(config.small_radius * config.large_radius)

    objects = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        ys = slice(max(0, box[0].start - pad), min(height, box[0].stop + pad))
        xs = slice(max(0, box[1].start - pad), min(width, box[1].stop + pad))
        own = labels[ys, xs] == index
        if own.sum() * 4 < min_area:
            continue  # far too small even before measuring
        region = (owner[ys, xs] == index) & (gap[ys, xs] <= pad)
        # the core: the deepest pixels of the component (chosen by geometry, not by colour,
        # so that noise does not bias the mean colour)
        depth = ndimage.distance_transform_edt(np.pad(own, 1))[1:-1, 1:-1]
        core_mean = diff[ys, xs][depth >= 0.5 * depth.max()].mean(axis=0)  # [3]
        a = np.clip(offsets @ core_mean / (offsets**2).sum(axis=1), 0.0, 1.0)  # [K]
        k = int(np.argmin(((core_mean - a[:, None] * offsets) ** 2).sum(axis=1)))
        alpha = diff[ys, xs] @ offsets[k] / float(offsets[k] @ offsets[k])  # [h, w]
        alpha = np.where(region, alpha, 0.0)
        area = float(alpha.sum())  # px
        if area < min_area:
            continue
        gy, gx = np.mgrid[ys, xs] + 0.5  # pixel centres
        cx, cy = float((alpha * gx).sum() / area), float((alpha * gy).sum() / area)
        shape, blur, fit = _fit_shape(
            alpha, region, area, (cx, cy), (ys.start, xs.start), resolution
        )
        radius = math.sqrt(area / AREA_FACTOR[shape]) / resolution
        size = "small" if radius < radius_cut else "large"
        objects.append(
            DetectedObject(shape, names[k], size, cx / width, cy / height, radius, blur, fit)
        )
    objects.sort(key=lambda o: (o.cx, o.cy))
    return Detection(tuple(objects), background)
