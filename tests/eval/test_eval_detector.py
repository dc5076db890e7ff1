"""The weight-free detector reads rendered scenes back exactly, and survives mild corruption."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from openimagen.data.shapes import SPLITS, Layout, PlacedObject, ShapesWorld, render_layout
from openimagen.eval.detector import detect
from openimagen.eval.shapebench import score_detection, score_image


def _samples(resolution: int, n: int, seed: int = 0):
    worlds = [ShapesWorld(resolution=resolution, split=s, seed=seed) for s in SPLITS]
    return [worlds[i % 3].sample(i // 3) for i in range(n)]


def _exact(detection, layout: Layout, resolution: int) -> bool:
    """Every object found with its shape, colour, size, and centroid within half a pixel."""
    if detection.background != layout.background or len(detection.objects) != len(layout.objects):
        return False
    remaining = list(detection.objects)
    for obj in layout.objects:
        cx, cy = obj.centroid
        match = [
            d for d in remaining
            if (d.shape, d.color, d.size) == (obj.shape, obj.color, obj.size)
            and abs(d.cx - cx) < 0.5 / resolution and abs(d.cy - cy) < 0.5 / resolution
        ]  # fmt: skip
        if not match:
            return False
        remaining.remove(match[0])
    return True


@pytest.mark.parametrize("resolution", [32, 128])
def test_eval_detector_reads_ground_truth_renders(resolution):
    # The bar: >= 99.5% all-correct on 2,000 rendered specs at 32x32 and 128x128.
    count = 2000
    samples = _samples(resolution, count)
    exact = scored = 0
    for spec, layout in samples:
        detection = detect(render_layout(layout, resolution))
        exact += _exact(detection, layout, resolution)
        scored += score_detection(detection, spec).all_correct
    assert exact / count >= 0.995, exact
    assert scored / count >= 0.995, scored


def test_eval_detector_accepts_tensor_pil_and_uint8_alike():
    from openimagen.images import to_pil

    layout = Layout((PlacedObject("triangle", "orange", "large", 0.3, 0.6, 0.16),
                     PlacedObject("circle", "purple", "small", 0.75, 0.25, 0.09)), "gray")  # fmt: skip
    image = render_layout(layout, 64)  # [H, W, 3] in [0, 1]
    tensor = torch.from_numpy(image).permute(2, 0, 1) * 2 - 1
    uint8 = (image * 255).round().astype(np.uint8)
    results = [detect(x) for x in (image, tensor, to_pil(tensor), uint8)]
    described = {tuple((o.shape, o.color, o.size) for o in r.objects) for r in results}
    assert described == {(("triangle", "orange", "large"), ("circle", "purple", "small"))}
    assert all(r.background == "gray" for r in results)


def test_eval_detector_degrades_gracefully():
    # Mild corruption keeps the reading right; heavy corruption lowers it, not to zero at once.
    samples = _samples(32, 150, seed=1)
    rng = np.random.default_rng(0)

    def rate(corrupt) -> float:
        return np.mean(
            [score_image(corrupt(render_layout(lay, 32)), s).all_correct for s, lay in samples]
        )

    def noise(std):
        return lambda x: np.clip(x + rng.normal(0, std, x.shape), 0, 1).astype(np.float32)

    def blur(sigma):
        return lambda x: ndimage.gaussian_filter(x, (sigma, sigma, 0), mode="nearest")

    mild_noise, strong_noise = rate(noise(0.05)), rate(noise(0.2))
    mild_blur, strong_blur = rate(blur(0.75)), rate(blur(2.0))
    assert mild_noise >= 0.97 and mild_blur >= 0.97
    assert 0.3 <= strong_noise < mild_noise and 0.2 <= strong_blur < mild_blur
