"""The denoiser interface and the wrappers that act on it: guidance and thresholding.

A *denoiser* is a function ``(x_t [B, ...], t [B], cond) -> x0_hat [B, ...]``. A network with
an eps, v or x0 head becomes one through :func:`model_to_denoiser`; classifier-free guidance
and static/dynamic thresholding each take a denoiser and return a denoiser, so every sampler
gets them without knowing about them.

Extra output channels: a denoiser may return more channels than x_t has, [B, C + E, ...]. The
first C are x0_hat; the E others ride along (a learned-variance head, such as DeepFloyd IF's
"learned_range" channels, Nichol & Dhariwal 2021 sec. 3.1). Guidance keeps the conditional
branch's extras (as the IF pipelines do), thresholding leaves them alone, and the samplers
read x0_hat from the first C channels (:func:`split_extra`); only ``ddpm`` with
``learned_variance`` uses them.
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
def split_extra(out: torch.Tensor, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x0_hat [B, C, ...], extra channels [B, E, ...] or None) of a denoiser's output.

    C is x_t's channel count (dim 1); an output with more channels carries extras (module
    docstring). Anything else that differs from x_t's shape is a :class:`ShapeError`.
    """
    same_rest = out.ndim == x_t.ndim and out.shape[0] == x_t.shape[0] and (
        out.shape[2:] == x_t.shape[2:]
    )
    if not same_rest or out.shape[1] < x_t.shape[1]:
        raise ShapeError(
            "denoiser output",
            tuple(out.shape),
            f"{tuple(x_t.shape)} (the shape of x_t), optionally with extra channels in dim 1",
        )
    channels = x_t.shape[1]
    if out.shape[1] == channels:
        return out, None
    return out[:, :channels], out[:, channels:]


def _with_extra(x0: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
    return x0 if extra is None else torch.cat([x0, extra], dim=1)


def model_to_denoiser(
    model_fn: ModelFn,
    schedule: Schedule,
    prediction: Prediction,
    *,
    learned_variance: bool = False,
) -> Denoiser:
    """Wrap ``model_fn(x_t, t, cond) -> raw prediction`` of kind ``prediction`` into a denoiser.

    The raw eps / v / x0 output is converted to x0_hat at the log-SNR ``schedule(t)``. With
    ``learned_variance`` the network outputs twice x_t's channels, the prediction and then a
    variance head; the head is passed through as extra channels (module docstring).
    """
    check_prediction(prediction)

    def denoiser(x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        raw = model_fn(x_t, t, cond)  # [B, C] or, with learned variance, [B, 2C, ...]
        if not learned_variance:
            return prediction_to_x0(raw, x_t, schedule(t), prediction)
        if raw.shape[1] != 2 * x_t.shape[1]:
            raise ShapeError(
                "model output", tuple(raw.shape),
                f"{2 * x_t.shape[1]} channels (prediction + learned variance) for x_t "
                f"{tuple(x_t.shape)}",
            )  # fmt: skip
        pred, variance = raw.split(x_t.shape[1], dim=1)  # [B, C, ...] each
        return torch.cat([prediction_to_x0(pred, x_t, schedule(t), prediction), variance], 1)

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
        x0_cond, extra = split_extra(x0_both[:batch], x_t)  # [B, C, ...], extras or None
        x0_uncond, _ = split_extra(x0_both[batch:], x_t)
        return _with_extra(x0_uncond + w * (x0_cond - x0_uncond), extra)

    return guided


# -- 3. thresholding (Imagen sec. 2.3) -------------------------------------------------------
def static_threshold_x0(x0: torch.Tensor) -> torch.Tensor:
    """Static thresholding: clip x0_hat elementwise to [-1, 1]."""
    return x0.clamp(-1.0, 1.0)


def dynamic_threshold_x0(
    x0: torch.Tensor, percentile: float = 99.5, max_value: float | None = None
) -> torch.Tensor:
    """Dynamic thresholding (Imagen sec. 2.3): per sample, s = max(1, p-th percentile of |x0|).

    The percentile runs over all non-batch dimensions of x0 [B, ...]; x0 is clipped to
    [-s, s] and divided by s, so the result lies in [-1, 1] and samples already inside
    [-1, 1] (s = 1) are unchanged. ``max_value`` caps s (DeepFloyd IF: 1.5 for stage I,
    1.0 for stage II, diffusers' ``sample_max_value``); None leaves it unbounded.
    """
    _check_percentile(percentile)
    _check_max_value(max_value)
    if x0.ndim < 2:
        raise ShapeError("x0", tuple(x0.shape), "[B, ...] with a batch and a data dimension")
    flat = x0.reshape(x0.shape[0], -1).abs()  # [B, N]
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()  # torch.quantile needs float32/float64
    s = torch.quantile(flat, percentile / 100.0, dim=1)  # [B]
    s = s.clamp(min=1.0, max=max_value)  # [B]
    s = s.to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))  # [B, 1, ..., 1]
    return torch.maximum(torch.minimum(x0, s), -s) / s


def static_threshold(denoiser: Denoiser) -> Denoiser:
    """A denoiser whose x0_hat is clipped to [-1, 1] (Imagen sec. 2.3, static thresholding)."""

    def thresholded(x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        x0, extra = split_extra(denoiser(x_t, t, cond), x_t)
        return _with_extra(static_threshold_x0(x0), extra)

    return thresholded


def dynamic_threshold(
    denoiser: Denoiser, percentile: float = 99.5, max_value: float | None = None
) -> Denoiser:
    """A denoiser whose x0_hat goes through :func:`dynamic_threshold_x0` (Imagen sec. 2.3)."""
    _check_percentile(percentile)
    _check_max_value(max_value)

    def thresholded(x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        x0, extra = split_extra(denoiser(x_t, t, cond), x_t)
        return _with_extra(dynamic_threshold_x0(x0, percentile, max_value), extra)

    return thresholded


def apply_threshold(
    denoiser: Denoiser,
    kind: Literal["none", "static", "dynamic"],
    percentile: float = 99.5,
    max_value: float | None = None,
) -> Denoiser:
    """Wrap ``denoiser`` with the thresholding called ``kind`` ("none", "static", "dynamic").

    ``max_value`` caps dynamic thresholding's s (:func:`dynamic_threshold_x0`).
    """
    if kind not in THRESHOLDS:
        raise InvalidArgumentError(
            "threshold", kind, "one of " + ", ".join(repr(k) for k in THRESHOLDS)
        )
    _check_percentile(percentile)
    if kind == "static":
        return static_threshold(denoiser)
    if kind == "dynamic":
        return dynamic_threshold(denoiser, percentile, max_value)
    return denoiser


def _check_max_value(max_value: float | None) -> None:
    if max_value is None:
        return
    if isinstance(max_value, bool) or not isinstance(max_value, (int, float)) or not (
        math.isfinite(max_value) and max_value >= 1.0
    ):
        raise InvalidArgumentError(
            "max_value", max_value, "None or a number >= 1 (the largest s; DeepFloyd IF: 1.5)"
        )


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
    "split_extra",
    "static_threshold",
    "static_threshold_x0",
]
