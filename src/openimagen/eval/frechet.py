"""Frechet distance between two image sets in the shapes world's feature space.

The Frechet (2-Wasserstein) distance between N(mu1, S1) and N(mu2, S2) is
``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` (Dowson & Landau, 1982); with
InceptionV3 pool features it is FID (Heusel et al., 2017).

Standard FID is not computed here: ``openimagen eval coco`` takes it from torch-fidelity
(:mod:`openimagen.eval.metrics`), InceptionV3 and Frechet formula alike. This module keeps
the formula for :class:`ShapesFeatureExtractor` (weight-free, the shapes world's default),
because torch-fidelity needs torchvision, which the project's default CPU environment cannot
import; a test in the evaluation environment checks that :func:`frechet_distance` equals
torch-fidelity's ``fid_statistics_to_metric`` on the same statistics.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from openimagen.data.shapes import BACKGROUND_COLORS, OBJECT_COLORS, SHAPES, SIZES
from openimagen.errors import InvalidArgumentError, ShapeError
from openimagen.eval.detector import detect

logger = logging.getLogger(__name__)


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps images [N, 3, H, W] in [-1, 1] to features [N, dim]; ``name`` identifies the space."""

    name: str
    dim: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (formula in the module doc)."""
    from scipy import linalg

    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    sigma1, sigma2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    d = mu1.shape[0]
    for name, value, shape in (
        ("mu2", mu2, (d,)),
        ("sigma1", sigma1, (d, d)),
        ("sigma2", sigma2, (d, d)),
    ):
        if value.shape != shape:
            raise ShapeError(name, value.shape, f"{shape} to match mu1 of shape {(d,)}")
    with warnings.catch_warnings():
        # singular products are common (a histogram's bins sum to 1) and handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # singular product (e.g. fewer samples than dimensions): regularize, as is standard
        logger.warning(
            "frechet_distance: singular covariance product; adding %g to the diagonal", eps
        )
        offset = np.eye(d) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        # the exact root is real for PSD inputs; small imaginary parts are round-off
        if not np.allclose(
            np.diagonal(covmean).imag, 0, atol=1e-3 * max(1.0, np.abs(covmean).max())
        ):
            raise InvalidArgumentError(
                "sigma1/sigma2", "matrices with a complex (S1 S2)^(1/2)",
                "symmetric positive semi-definite covariance matrices",
            )  # fmt: skip
        covmean = covmean.real
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
    return float(max(value, 0.0))


def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D, D] of features [N, D] (N >= 2)."""
    array = (
        features.detach().cpu().double().numpy()
        if isinstance(features, torch.Tensor)
        else np.asarray(features, np.float64)
    )
    if array.ndim != 2 or array.shape[0] < 2:
        raise ShapeError("features", array.shape, "[N, D] with N >= 2")
    return array.mean(axis=0), np.cov(array, rowvar=False).reshape(array.shape[1], array.shape[1])


def extract_features(
    extractor: FeatureExtractor,
    images: torch.Tensor | Iterable[torch.Tensor],
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> np.ndarray:
    """Features [N, dim] of images given as one tensor [N, 3, H, W] or as an iterable of batches."""
    batches = images.split(batch_size) if isinstance(images, torch.Tensor) else images
    out = []
    for batch in tqdm(batches, disable=not progress, desc=f"features ({extractor.name})"):
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ShapeError("images", tuple(batch.shape), "[N, 3, H, W]")
        with torch.inference_mode():
            out.append(extractor(batch).detach().cpu().double().numpy())  # [n, dim]
    return np.concatenate(out)


def frechet_distance_images(
    images_a: torch.Tensor | Iterable[torch.Tensor],
    images_b: torch.Tensor | Iterable[torch.Tensor],
    extractor: FeatureExtractor | None = None,
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> float:
    """Frechet distance between two image sets in ``extractor``'s space (default: shapes features)."""
    extractor = extractor or ShapesFeatureExtractor()
    stats = [
        feature_statistics(extract_features(extractor, x, batch_size=batch_size, progress=progress))
        for x in (images_a, images_b)
    ]
    return frechet_distance(*stats[0], *stats[1])


class ShapesFeatureExtractor:
    """A documented, weight-free feature space for the shapes world ("shapes-v2", 76 dims).

    Each coordinate is standardized by its standard deviation over 256 rendered training
    scenes at the input's resolution (computed once per resolution, deterministic), floored
    at ``std_floor`` = 0.05 in the coordinate's own units (a 5% pixel fraction, 0.05 in pixel
    value, 0.05 objects or pixels): a coordinate that is constant over perfect renders, such
    as the fitted blur at 128x128, would otherwise be divided by ~0 and swamp all the others
    (shapes-v1 floored at 1e-3 and gave distances in the millions at 128x128).

    Every factor the world varies, and every typical failure of a generator, moves one
    group of coordinates, so the distance is small only when the two sets agree on all:

    * 9: palette histogram, the fraction of pixels nearest to each object and background
      colour (colour distribution, wrong hues);
    * 48: the image average-pooled to 4x4 RGB (coarse spatial layout: where the mass is);
    * 15: detector read-out: object count, counts per shape, per colour and per size, and
      the mean fitted blur, template residual and radius (composition statistics, malformed shapes);
    * 4: mean gradient magnitude, high-frequency residual energy, pixel standard deviation
      and the fraction of pixels matching no palette colour (blur, noise, colour bleeding).
    """

    name = "shapes-v2"
    std_floor = 0.05
    dim = 76
    reference_size = 256
    reference_seed = 20240601

    def __init__(self, standardize: bool = True) -> None:
        self.standardize = standardize
        names = [*OBJECT_COLORS, *BACKGROUND_COLORS]
        palette = [*OBJECT_COLORS.values(), *BACKGROUND_COLORS.values()]
        self._names = names
        self._palette = torch.tensor(palette, dtype=torch.float32) / 127.5 - 1  # [9, 3]
        self._reference: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ShapeError("images", tuple(images.shape), "[N, 3, H, W]")
        raw = self.raw_features(images)  # [N, 76]
        if not self.standardize:
            return raw
        mean, std = self._reference_stats(images.shape[-1])
        return (raw - mean) / std

    def _reference_stats(self, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Each coordinate is divided by its spread over rendered training scenes of the same
        # resolution, so that every group weighs in and the distance has no arbitrary units.
        if resolution not in self._reference:
            from openimagen.data.shapes import ShapesWorld

            world = ShapesWorld(resolution=resolution, seed=self.reference_seed)
            ref = self.raw_features(
                torch.stack([world[i]["image"] for i in range(self.reference_size)])
            )
            self._reference[resolution] = (
                ref.mean(dim=0),
                ref.std(dim=0).clamp_min(self.std_floor),
            )
        return self._reference[resolution]

    def raw_features(self, images: torch.Tensor) -> torch.Tensor:
        """The unstandardized features [N, 76] of images [N, 3, H, W] in [-1, 1]."""
        x = images.detach().float().cpu().clamp(-1, 1)  # [N, 3, H, W]
        n = x.shape[0]
        pix = x.permute(0, 2, 3, 1).reshape(n, -1, 3)  # [N, HW, 3]
        dist = torch.cdist(pix, self._palette.expand(n, -1, -1))  # [N, HW, 9]
        nearest = dist.argmin(dim=2)
        hist = F.one_hot(nearest, len(self._names)).float().mean(dim=1)  # [N, 9]
        off_palette = (dist.min(dim=2).values > 0.25).float().mean(dim=1, keepdim=True)  # [N, 1]
        layout = F.adaptive_avg_pool2d(x, 4).reshape(n, 48)  # [N, 48]
        gx, gy = x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]
        grad = (gx.abs().mean(dim=(1, 2, 3)) + gy.abs().mean(dim=(1, 2, 3)))[:, None]  # [N, 1]
        residual = x - F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        high = residual.pow(2).mean(dim=(1, 2, 3)).sqrt()[:, None]  # [N, 1]
        spread = x.std(dim=(1, 2, 3))[:, None]  # [N, 1]
        detected = torch.tensor([self._detector_features(img) for img in x])  # [N, 15]
        return torch.cat([hist, layout, detected, grad, high, spread, off_palette], dim=1)

    @staticmethod
    def _detector_features(image: torch.Tensor) -> list[float]:
        objects = detect(image).objects
        counts = [float(len(objects))]
        counts += [float(sum(o.shape == s for o in objects)) for s in SHAPES]
        counts += [float(sum(o.color == c for o in objects)) for c in OBJECT_COLORS]
        counts += [float(sum(o.size == z for o in objects)) for z in SIZES]
        blur = float(np.mean([o.blur for o in objects])) if objects else 0.0
        fit = float(np.mean([o.fit for o in objects])) if objects else 0.0
        radius = float(np.mean([o.radius for o in objects])) if objects else 0.0
        return counts + [blur, fit, radius]
