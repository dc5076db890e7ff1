"""Frechet distance: closed-form Gaussian cases, the shapes feature space."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openimagen.data.shapes import ShapesWorld
from openimagen.errors import ShapeError
from openimagen.eval.frechet import (
    FeatureExtractor,
    ShapesFeatureExtractor,
    extract_features,
    feature_statistics,
    frechet_distance,
    frechet_distance_images,
)


def test_eval_frechet_closed_form_for_commuting_covariances():
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T commute, so
    # d^2 = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    a, b = np.array([1.0, 2.0, 0.5, 3.0, 4.0]), np.array([4.0, 2.0, 2.0, 0.75, 1.0])
    mu1, mu2 = np.arange(5.0), np.arange(5.0) + np.array([1.0, 0, -2.0, 0, 0.5])
    expected = 1 + 4 + 0.25 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-8)
    # one dimension: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(9 + 1)


def test_eval_frechet_general_covariances_and_identity():
    # non-commuting case checked against the 2-Wasserstein formula written another way:
    # Tr((S1^1/2 S2 S1^1/2)^1/2) equals Tr((S1 S2)^1/2)
    rng = np.random.default_rng(1)
    m1, m2 = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    s1, s2 = m1 @ m1.T + 0.1 * np.eye(4), m2 @ m2.T + 0.1 * np.eye(4)
    w, v = np.linalg.eigh(s1)
    root1 = v @ np.diag(np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    expected = np.trace(s1) + np.trace(s2) - 2 * np.sqrt(inner).sum()
    assert frechet_distance(np.zeros(4), s1, np.zeros(4), s2) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(np.ones(4), s1, np.ones(4), s1) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ShapeError, match="sigma2"):
        frechet_distance(np.zeros(4), s1, np.zeros(4), np.eye(3))


def test_eval_frechet_from_samples_approaches_the_population_value():
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1.0, size=(20000, 2))
    y = rng.normal(0.0, 1.0, size=(20000, 2)) * np.array([2.0, 1.0]) + np.array([1.0, 0.0])
    d = frechet_distance(*feature_statistics(x), *feature_statistics(y))
    assert d == pytest.approx(1.0 + 1.0, abs=0.1)  # mean shift 1, std 1 -> 2 on one axis
    with pytest.raises(ShapeError):
        feature_statistics(np.zeros((1, 3)))


def test_eval_shapes_features_separate_real_from_corrupted():
    extractor = ShapesFeatureExtractor()
    assert isinstance(extractor, FeatureExtractor) and extractor.name == "shapes-v2"
    a = torch.stack([ShapesWorld(resolution=32, seed=10)[i]["image"] for i in range(160)])
    b = torch.stack([ShapesWorld(resolution=32, seed=11)[i]["image"] for i in range(160)])
    feats = extractor(a[:4])
    assert feats.shape == (4, extractor.dim) and torch.isfinite(feats).all()
    assert frechet_distance_images(a[:40], a[:40], extractor) == pytest.approx(0.0, abs=1e-6)
    noisy = (b + 0.2 * torch.randn(b.shape, generator=torch.Generator().manual_seed(0))).clamp(
        -1, 1
    )
    blurred = torch.nn.functional.avg_pool2d(b, 3, stride=1, padding=1, count_include_pad=False)
    recoloured = b[:, [2, 0, 1]]  # hues no longer from the palette
    stats = {
        name: feature_statistics(extract_features(extractor, x, batch_size=50))
        for name, x in {
            "a": a,
            "b": b,
            "noisy": noisy,
            "blurred": blurred,
            "recoloured": recoloured,
        }.items()
    }
    same = frechet_distance(*stats["a"], *stats["b"])
    for name in ("noisy", "blurred", "recoloured"):
        assert frechet_distance(*stats["a"], *stats[name]) > 3 * same, name


def test_eval_shapes_features_no_coordinate_swamps_the_rest_at_128():
    """Coordinates constant over perfect renders (fitted blur at 128x128) are floored, so a
    mildly blurred image moves them a bounded amount rather than by 1/1e-3 (shapes-v1)."""
    extractor = ShapesFeatureExtractor()
    b = torch.stack([ShapesWorld(resolution=128, seed=3)[i]["image"] for i in range(6)])
    blurred = torch.nn.functional.avg_pool2d(b, 3, stride=1, padding=1, count_include_pad=False)
    z = extractor(blurred)  # [6, 76], in units of the data's spread
    assert z.abs().max() < 100
    # and the blur still shows: the image-statistics group moves by more than a spread
    assert (z - extractor(b)).abs().max() > 1
