"""q(x_t | x_0), conversions between prediction targets, and the loss (diffusion/objectives.py)."""

from __future__ import annotations

import math

import pytest
import torch

from openimagen.diffusion import (
    PREDICTIONS,
    check_prediction,
    diffusion_loss,
    eps_from_x0,
    prediction_to_x0,
    q_sample,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
)
from openimagen.errors import InvalidArgumentError, ShapeError


# -- q(x_t | x_0) and conversions ----------------------------------------------------------------
def test_q_sample_moments():
    # For fixed x0 and n draws of noise, x_t has mean alpha x0 and variance sigma^2 per element.
    # Standard errors: sigma / sqrt(n) for the mean, sigma^2 sqrt(2 / (n - 1)) for the variance
    # (Gaussian); n = 20000 and 5 standard errors.
    n = 20000
    gen = torch.Generator().manual_seed(0)
    x0 = torch.tensor([0.7, -0.3, 0.0], dtype=torch.float64).expand(n, 3)  # [n, 3]
    logsnr = torch.full((n,), 0.8, dtype=torch.float64)
    noise = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    x_t = q_sample(x0, logsnr, noise)
    alpha, sigma = math.sqrt(1 / (1 + math.exp(-0.8))), math.sqrt(1 / (1 + math.exp(0.8)))
    assert (x_t.mean(0) - alpha * x0[0]).abs().max() < 5 * sigma / math.sqrt(n)
    assert (x_t.var(0) - sigma**2).abs().max() < 5 * sigma**2 * math.sqrt(2 / (n - 1))


def test_conversions_round_trip():
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(64, 3, 4, 4, generator=gen, dtype=torch.float64)
    eps = torch.randn(64, 3, 4, 4, generator=gen, dtype=torch.float64)
    logsnr = torch.linspace(-15, 15, 64, dtype=torch.float64)  # [B]
    x_t = q_sample(x0, logsnr, eps)
    v = v_from_x0_eps(x0, eps, logsnr)
    torch.testing.assert_close(x0_from_eps(x_t, eps, logsnr), x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(eps_from_x0(x_t, x0, logsnr), eps, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(x0_from_v(x_t, v, logsnr), x0, rtol=1e-9, atol=1e-9)
    # v = alpha eps - sigma x0, written out (Salimans & Ho 2022)
    alpha = torch.sigmoid(logsnr).sqrt().view(-1, 1, 1, 1)
    sigma = torch.sigmoid(-logsnr).sqrt().view(-1, 1, 1, 1)
    torch.testing.assert_close(v, alpha * eps - sigma * x0)
    for prediction, pred in (("eps", eps), ("v", v), ("x0", x0)):
        got = prediction_to_x0(pred, x_t, logsnr, prediction)
        torch.testing.assert_close(got, x0, rtol=1e-9, atol=1e-9)


def test_conversion_shape_errors():
    x = torch.zeros(4, 3)
    with pytest.raises(ShapeError, match=r"logsnr.shape=\(3,\).*B=4"):
        q_sample(x, torch.zeros(3), x)
    with pytest.raises(ShapeError, match=r"noise.shape=\(4, 2\)"):
        q_sample(x, torch.zeros(4), torch.zeros(4, 2))
    with pytest.raises(InvalidArgumentError, match="prediction='epsilon'.*'eps', 'v', 'x0'"):
        prediction_to_x0(x, x, torch.zeros(4), "epsilon")


# -- loss ----------------------------------------------------------------------------------------
def _loss_case(seed: int = 2):
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(16, 2, 5, generator=gen, dtype=torch.float64)
    noise = torch.randn(16, 2, 5, generator=gen, dtype=torch.float64)
    logsnr = torch.linspace(-8, 8, 16, dtype=torch.float64)
    error = 0.1 * torch.randn(16, 2, 5, generator=gen, dtype=torch.float64)
    return x0, noise, logsnr, error


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_loss_is_mse_in_target_space(prediction):
    x0, noise, logsnr, error = _loss_case()
    target = {"eps": noise, "x0": x0, "v": v_from_x0_eps(x0, noise, logsnr)}[prediction]
    per_sample = diffusion_loss(target + error, x0, noise, logsnr, prediction, reduction="none")
    torch.testing.assert_close(per_sample, error.square().mean(dim=(1, 2)))
    mean = diffusion_loss(target + error, x0, noise, logsnr, prediction)
    torch.testing.assert_close(mean, error.square().mean())


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("gamma", [1.0, 5.0])
def test_min_snr_weight_equals_min_snr_times_x0_error(prediction, gamma):
    # Hang et al. 2023: whatever the target, the weighted loss equals min(snr, gamma) times
    # the squared error of the implied x0 prediction. We check that identity through our own
    # target -> x0 conversion, independently of the per-target weight formulas.
    x0, noise, logsnr, error = _loss_case()
    x_t = q_sample(x0, logsnr, noise)
    target = {"eps": noise, "x0": x0, "v": v_from_x0_eps(x0, noise, logsnr)}[prediction]
    pred = target + error
    x0_mse = (prediction_to_x0(pred, x_t, logsnr, prediction) - x0).square().mean(dim=(1, 2))
    expected = torch.minimum(logsnr.exp(), torch.tensor(gamma, dtype=torch.float64)) * x0_mse
    got = diffusion_loss(pred, x0, noise, logsnr, prediction, min_snr_gamma=gamma, reduction="none")
    torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-12)


def test_loss_bad_arguments():
    x0, noise, logsnr, _ = _loss_case()
    with pytest.raises(InvalidArgumentError, match="reduction='sum'.*'mean', 'none'"):
        diffusion_loss(x0, x0, noise, logsnr, "x0", reduction="sum")
    with pytest.raises(InvalidArgumentError, match="min_snr_gamma=0.0.*positive"):
        diffusion_loss(x0, x0, noise, logsnr, "x0", min_snr_gamma=0.0)
    with pytest.raises(ShapeError, match=r"pred.shape=\(16, 10\)"):
        diffusion_loss(x0.reshape(16, 10), x0, noise, logsnr, "x0")


def test_check_prediction_names_the_allowed_kinds():
    for prediction in PREDICTIONS:
        check_prediction(prediction)  # accepted: no error
    with pytest.raises(InvalidArgumentError, match="prediction='noise'.*'eps', 'v', 'x0'"):
        check_prediction("noise")
