"""The denoiser interface and the wrappers that act on it: guidance and thresholding.

A *denoiser* is a function ``(x_t [B, ...], t [B], cond) -> x0_hat [B, ...]``. A network with
an eps, v or x0 head becomes one through :func:`model_to_denoiser`; classifier-free guidance
and static/dynamic thresholding each take a denoiser and return a denoiser, so every sampler
gets them without knowing about them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch

from openimagen.diffusion.names import THRESHOLDS
from openimagen.diffusion.objectives import Prediction, check_prediction, prediction_to_x0
from openimagen.diffusion.schedule import Schedule
from openimagen.errors import InvalidArgumentError, InvalidTypeError, ShapeError

Denoiser = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]
ModelFn = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]


# -- 1. a network as a denoiser --------------------------------------------------------------
def model_to_denoiser(model_fn: ModelFn, schedule: Schedule, prediction: Prediction) -> Denoiser:
    """Wrap ``model_fn(x_t, t, cond) -> raw prediction`` of kind ``prediction`` into a denoiser.

    The raw eps / v / x0 output is converted to x0_hat at the log-SNR ``schedule(t)``.
    """
    check_prediction(prediction)

    def denoiser(x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        raw = model_fn(x_t, t, cond)  # [B, ...]
        return prediction_to_x0(raw, x_t, schedule(t), prediction)

    return denoiser


# -- 2. classifier-free guidance (Ho & Salimans 2021; Imagen sec. 2.2) -----------------------
def concat_cond(a: Any, b: Any) -> Any:
    """Concatenate two conditioning pytrees along the batch dimension (dim 0).

    Leaves are tensors with the batch first (concatenated) or None (kept). Containers are
    dicts (same keys), tuples or lists (same length), matched element by element.
    """
    if a is None and b is None:
        return None
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.ndim == 0 or b.ndim == 0 or a.shape[1:] != b.shape[1:]:
            raise ShapeError(
                "uncond", tuple(b.shape), f"the shape of the matching cond tensor {tuple(a.shape)}"
            )
        return torch.cat([a, b], dim=0)
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            raise InvalidArgumentError(
                "uncond keys", sorted(b), f"the same keys as cond: {sorted(a)}"
            )
        return {key: concat_cond(a[key], b[key]) for key in a}
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and type(a) is type(b):
        if len(a) != len(b):
            raise InvalidArgumentError("uncond length", len(b), f"{len(a)} (the length of cond)")
        return type(a)(concat_cond(x, y) for x, y in zip(a, b, strict=True))
    raise InvalidTypeError(
        "uncond",
        b,
        f"the same structure as cond ({type(a).__name__}): tensors, None, or dicts/tuples/lists "
        "of them",
    )


def classifier_free_guidance(denoiser: Denoiser, guidance_weight: float, uncond: Any) -> Denoiser:
    """Classifier-free guidance: x0 = x0_u + w (x0_c - x0_u), both halves in one forward.

    Ho & Salimans 2021 write eps = eps_u + w (eps_c - eps_u); at fixed x_t, x0 is affine in
    eps, so the same combination of x0 predictions is identical. ``uncond`` is the
    unconditional conditioning (same structure and batch size as the ``cond`` the sampler
    passes). With w == 1 the result is exactly the conditional denoiser and the unconditional
    half is never computed.
    """
    if isinstance(guidance_weight, bool) or not isinstance(guidance_weight, (int, float)):
        raise InvalidTypeError("guidance_weight", guidance_weight, "a float >= 0")
    if not (math.isfinite(guidance_weight) and guidance_weight >= 0):
        raise InvalidArgumentError(
            "guidance_weight",
            guidance_weight,
            "a finite number >= 0 (1 = no guidance, 0 = unconditional, Imagen uses 1 to 10+)",
        )
    w = float(guidance_weight)
    if w == 1.0:

        def conditional(x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
            return denoiser(x_t, t, cond)

        return conditional

    # A sampler passes the same cond at every step: build the doubled conditioning once
    # (for SR stages it holds the [2B, C, H, W] low-res image), not once per step.
    doubled: list[Any] = [None, None]  # [the cond it was built from, cat(cond, uncond)]

    def guided(x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        batch = x_t.shape[0]
        if doubled[0] is not cond:
            doubled[:] = [cond, concat_cond(cond, uncond)]
        x0_both = denoiser(
            torch.cat([x_t, x_t], dim=0),  # [2B, ...]
            torch.cat([t, t], dim=0),  # [2B]
            doubled[1],
        )  # [2B, ...]
        x0_cond, x0_uncond = x0_both[:batch], x0_both[batch:]  # [B, ...] each
        return x0_uncond + w * (x0_cond - x0_uncond)

    return guided


# -- 3. thresholding (Imagen sec. 2.3) -------------------------------------------------------
def static_threshold_x0(x0: torch.Tensor) -> torch.Tensor:
    """Static thresholding: clip x0_hat elementwise to [-1, 1]."""
    return x0.clamp(-1.0, 1.0)


def dynamic_threshold_x0(x0: torch.Tensor, percentile: float = 99.5) -> torch.Tensor:
    """Dynamic thresholding (Imagen sec. 2.3): per sample, s = max(1, p-th percentile of |x0|).

    The percentile runs over all non-batch dimensions of x0 [B, ...]; x0 is clipped to
    [-s, s] and divided by s, so the result lies in [-1, 1] and samples already inside
    [-1, 1] (s = 1) are unchanged.
    """
    _check_percentile(percentile)
    if x0.ndim < 2:
        raise ShapeError("x0", tuple(x0.shape), "[B, ...] with a batch and a data dimension")
    flat = x0.reshape(x0.shape[0], -1).abs()  # [B, N]
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()  # torch.quantile needs float32/float64
    s = torch.quantile(flat, percentile / 100.0, dim=1)  # [B]
    s = s.clamp(min=1.0).to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))  # [B, 1, ..., 1]
    return torch.maximum(torch.minimum(x0, s), -s) / s


def static_threshold(denoiser: Denoiser) -> Denoiser:
    """A denoiser whose x0_hat is clipped to [-1, 1] (Imagen sec. 2.3, static thresholding)."""

    def thresholded(x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        return static_threshold_x0(denoiser(x_t, t, cond))

    return thresholded


def dynamic_threshold(denoiser: Denoiser, percentile: float = 99.5) -> Denoiser:
    """A denoiser whose x0_hat goes through :func:`dynamic_threshold_x0` (Imagen sec. 2.3)."""
    _check_percentile(percentile)

    def thresholded(x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        return dynamic_threshold_x0(denoiser(x_t, t, cond), percentile)

    return thresholded


def apply_threshold(
    denoiser: Denoiser,
    kind: Literal["none", "static", "dynamic"],
    percentile: float = 99.5,
) -> Denoiser:
    """Wrap ``denoiser`` with the thresholding called ``kind`` ("none", "static", "dynamic")."""
    if kind not in THRESHOLDS:
        raise InvalidArgumentError(
            "threshold", kind, "one of " + ", ".join(repr(k) for k in THRESHOLDS)
        )
    _check_percentile(percentile)
    if kind == "static":
        return static_threshold(denoiser)
    if kind == "dynamic":
        return dynamic_threshold(denoiser, percentile)
    return denoiser


def _check_percentile(percentile: float) -> None:
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)):
        raise InvalidTypeError("percentile", percentile, "a number in (0, 100]")
    if not 0.0 < percentile <= 100.0:
        raise InvalidArgumentError(
            "percentile",
            percentile,
            "a number in (0, 100] (Imagen uses 99.5)",
            "Give it in percent, e.g. 99.5.",
        )


__all__ = [
    "Denoiser",
    "ModelFn",
    "apply_threshold",
    "classifier_free_guidance",
    "concat_cond",
    "dynamic_threshold",
    "dynamic_threshold_x0",
    "model_to_denoiser",
    "static_threshold",
    "static_threshold_x0",
]
