"""The forward process q(x_t | x_0), conversions between prediction targets, and the loss.

Variance-preserving diffusion (Kingma et al. 2021, VDM, sec. 2):
    x_t = alpha_t x_0 + sigma_t eps,  eps ~ N(0, I),  alpha_t^2 = sigmoid(lambda_t).
A network predicts one of three targets, all affine in each other at fixed x_t:
    "eps": the noise eps (Ho et al. 2020);
    "x0":  the clean data x_0;
    "v":   v = alpha_t eps - sigma_t x_0 (Salimans & Ho 2022, "Progressive distillation", sec. 4).
``logsnr`` arguments are [B] (one noise level per sample) or a scalar; they broadcast over the
remaining dimensions of the data.
"""

from __future__ import annotations

from typing import Literal

import torch

from openimagen.diffusion.schedule import alpha_sigma
from openimagen.errors import InvalidArgumentError, ShapeError

Prediction = Literal["eps", "v", "x0"]
PREDICTIONS: tuple[str, ...] = ("eps", "v", "x0")
REDUCTIONS: tuple[str, ...] = ("mean", "none")


# -- 1. broadcasting helpers -------------------------------------------------------------------
def _coefficients(logsnr: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha, sigma for ``logsnr`` reshaped to [B, 1, ..., 1] and cast to ``like``'s dtype."""
    alpha, sigma = alpha_sigma(_per_sample(logsnr, like))
    return alpha.to(like.dtype), sigma.to(like.dtype)


def _per_sample(value: torch.Tensor, like: torch.Tensor, name: str = "logsnr") -> torch.Tensor:
    """A scalar or [B] tensor reshaped to broadcast against ``like`` [B, ...]."""
    value = torch.as_tensor(value, device=like.device)
    if value.ndim == 0:
        return value
    if like.ndim == 0 or value.shape != (like.shape[0],):
        raise ShapeError(
            name,
            tuple(value.shape),
            f"a scalar or [B] with B={like.shape[0] if like.ndim else '?'} "
            f"(the batch size of a tensor of shape {tuple(like.shape)})",
        )
    return value.reshape(-1, *([1] * (like.ndim - 1)))  # [B, 1, ..., 1]


def check_prediction(prediction: str) -> None:
    """Refuse a prediction kind that is not one of :data:`PREDICTIONS`."""
    if prediction not in PREDICTIONS:
        raise InvalidArgumentError(
            "prediction", prediction, "one of " + ", ".join(repr(p) for p in PREDICTIONS)
        )


def _check_same_shape(name: str, tensor: torch.Tensor, reference: torch.Tensor) -> None:
    if tensor.shape != reference.shape:
        raise ShapeError(name, tuple(tensor.shape), f"{tuple(reference.shape)} (same as x)")


# -- 2. forward process ----------------------------------------------------------------------
def q_sample(x0: torch.Tensor, logsnr: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Draw from q(x_t | x_0) = N(alpha_t x_0, sigma_t^2 I) given the noise: alpha x0 + sigma eps."""
    _check_same_shape("noise", noise, x0)
    alpha, sigma = _coefficients(logsnr, x0)
    return alpha * x0 + sigma * noise


# -- 3. conversions between targets (all at fixed x_t) ---------------------------------------
def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    """x_0 = (x_t - sigma eps) / alpha."""
    alpha, sigma = _coefficients(logsnr, x_t)
    return (x_t - sigma * eps) / alpha


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    """x_0 = alpha x_t - sigma v (Salimans & Ho 2022, sec. 4; uses alpha^2 + sigma^2 = 1)."""
    alpha, sigma = _coefficients(logsnr, x_t)
    return alpha * x_t - sigma * v


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    """eps = (x_t - alpha x_0) / sigma."""
    alpha, sigma = _coefficients(logsnr, x_t)
    return (x_t - alpha * x0) / sigma


def v_from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    """v = alpha eps - sigma x_0 (Salimans & Ho 2022, sec. 4)."""
    alpha, sigma = _coefficients(logsnr, x0)
    return alpha * eps - sigma * x0


def prediction_to_x0(
    pred: torch.Tensor, x_t: torch.Tensor, logsnr: torch.Tensor, prediction: Prediction
) -> torch.Tensor:
    """Turn a network output of kind ``prediction`` ("eps", "v" or "x0") into x0_hat."""
    check_prediction(prediction)
    _check_same_shape("pred", pred, x_t)
    if prediction == "eps":
        return x0_from_eps(x_t, pred, logsnr)
    if prediction == "v":
        return x0_from_v(x_t, pred, logsnr)
    return pred


# -- 4. loss ---------------------------------------------------------------------------------
def diffusion_loss(
    pred: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    logsnr: torch.Tensor,
    prediction: Prediction,
    *,
    min_snr_gamma: float | None = None,
    reduction: Literal["mean", "none"] = "mean",
) -> torch.Tensor:
    """Mean squared error of ``pred`` against its own target (eps, v or x0).

    ``x0`` [B, ...] is the clean data and ``noise`` the eps that made x_t = q_sample(x0,
    logsnr, noise). With ``min_snr_gamma`` = gamma, each sample's loss is weighted so that
    the implied x0-space weight is min(snr, gamma) (Hang et al. 2023, "Efficient Diffusion
    Training via Min-SNR Weighting Strategy", eq. 9 and sec. 3.4): in eps space
    min(snr, gamma) / snr, in v space min(snr, gamma) / (snr + 1), in x0 space min(snr, gamma).
    ``reduction="none"`` returns the per-sample losses [B]; "mean" their mean.
    """
    check_prediction(prediction)
    _check_same_shape("pred", pred, x0)
    _check_same_shape("noise", noise, x0)
    if reduction not in REDUCTIONS:
        raise InvalidArgumentError(
            "reduction", reduction, "one of " + ", ".join(repr(r) for r in REDUCTIONS)
        )
    if x0.ndim < 1:
        raise ShapeError("x0", tuple(x0.shape), "[B, ...] with a batch dimension")
    if prediction == "eps":
        target = noise
    elif prediction == "v":
        target = v_from_x0_eps(x0, noise, logsnr)
    else:
        target = x0
    per_sample = (pred - target).square().reshape(x0.shape[0], -1).mean(dim=1)  # [B]
    if min_snr_gamma is not None:
        if not min_snr_gamma > 0:
            raise InvalidArgumentError(
                "min_snr_gamma", min_snr_gamma, "a positive number (5.0 in the paper) or None"
            )
        weight = min_snr_weight(logsnr, prediction, min_snr_gamma).to(per_sample)
        per_sample = per_sample * weight.expand_as(per_sample)  # [B]
    return per_sample.mean() if reduction == "mean" else per_sample


def min_snr_weight(logsnr: torch.Tensor, prediction: Prediction, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weight for ``prediction``'s space (Hang et al. 2023), stably in logsnr.

    snr = exp(logsnr). eps: min(snr, g) / snr = min(1, g e^-lambda); v: min(snr, g) / (snr + 1)
    = min(sigmoid(lambda), g sigmoid(-lambda)); x0: min(snr, g) = exp(min(lambda, log g)).
    """
    check_prediction(prediction)
    logsnr = torch.as_tensor(logsnr)
    log_gamma = torch.log(torch.as_tensor(gamma, dtype=logsnr.dtype, device=logsnr.device))
    if prediction == "eps":
        return torch.exp(torch.clamp(log_gamma - logsnr, max=0.0))
    if prediction == "v":
        return torch.minimum(torch.sigmoid(logsnr), gamma * torch.sigmoid(-logsnr))
    return torch.exp(torch.clamp(logsnr, max=float(log_gamma)))


__all__ = [
    "PREDICTIONS",
    "Prediction",
    "check_prediction",
    "diffusion_loss",
    "eps_from_x0",
    "min_snr_weight",
    "prediction_to_x0",
    "q_sample",
    "v_from_x0_eps",
    "x0_from_eps",
    "x0_from_v",
]
