"""Schedules, timestep grids, q(x_t | x_0), target conversions and the loss."""

from __future__ import annotations

import math

import pytest
import torch

from openimagen.diffusion import (
    PREDICTIONS,
    SCHEDULES,
    alpha_sigma,
    diffusion_loss,
    eps_from_x0,
    get_schedule,
    logsnr_cosine,
    logsnr_linear,
    prediction_to_x0,
    q_sample,
    uniform_timesteps,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
)
from openimagen.errors import InvalidArgumentError, InvalidTypeError, ShapeError

T_DENSE = torch.linspace(0.0, 1.0, 10001, dtype=torch.float64)


# -- schedules -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SCHEDULES)
def test_alpha_squared_plus_sigma_squared_is_one(name):
    logsnr = get_schedule(name)(T_DENSE)
    alpha, sigma = alpha_sigma(logsnr)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(alpha), rtol=0, atol=1e-14)
    # and at extreme log-SNRs, where 1 - alpha^2 would lose all precision
    alpha, sigma = alpha_sigma(torch.tensor([-60.0, 60.0], dtype=torch.float64))
    assert float(sigma[1]) == pytest.approx(math.exp(-30.0), rel=1e-12)
    assert float(alpha[0]) == pytest.approx(math.exp(-30.0), rel=1e-12)


@pytest.mark.parametrize("name", SCHEDULES)
def test_logsnr_strictly_decreasing_in_t(name):
    logsnr = get_schedule(name)(T_DENSE)
    assert bool((logsnr[1:] < logsnr[:-1]).all())
    assert bool(torch.isfinite(logsnr).all())


def test_cosine_endpoints_and_unclipped_form():
    ends = logsnr_cosine(torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(ends, torch.tensor([20.0, -20.0], dtype=torch.float64))
    ends = logsnr_cosine(torch.tensor([0.0, 1.0], dtype=torch.float64), -5.0, 7.0)
    torch.testing.assert_close(ends, torch.tensor([7.0, -5.0], dtype=torch.float64))
    # With infinite bounds it is exactly Nichol & Dhariwal's alpha_t = cos(pi t / 2).
    t = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    alpha, sigma = alpha_sigma(logsnr_cosine(t, -math.inf, math.inf))
    torch.testing.assert_close(alpha, torch.cos(math.pi * t / 2))
    torch.testing.assert_close(sigma, torch.sin(math.pi * t / 2))


def test_linear_schedule_follows_discrete_ddpm_betas():
    # DDPM (Ho et al. 2020): betas linear from 1e-4 to 0.02 over 1000 steps, alpha_bar their
    # cumulative product. -log(alpha_bar(t)) = sum of -log(1 - beta) ~ 0.1 t + 9.95 t^2 + (sum of
    # beta^2 / 2, at most 0.07), while VDM's continuous form is 1e-4 + 10 t^2: it drops the
    # 0.1 t term, so the two differ by at most 0.1 t plus 0.02 of second-order terms.
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    log_alpha_bar = torch.cumsum(torch.log1p(-betas), 0)  # [1000], step i at t = (i + 1) / 1000
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    log_alpha2 = torch.nn.functional.logsigmoid(logsnr_linear(t))  # log alpha_t^2
    assert bool(((log_alpha2 - log_alpha_bar).abs() <= 0.1 * t + 0.02).all())
    # and the ends: alpha_bar(1) = exp(-10.05...) in DDPM, exp(-10.0001) here
    assert float(log_alpha2[-1]) == pytest.approx(-10.0001, abs=1e-6)


def test_get_schedule_unknown_name_lists_allowed():
    with pytest.raises(InvalidArgumentError) as err:
        get_schedule("sigmoid")
    message = str(err.value)
    assert "schedule='sigmoid'" in message and "'cosine'" in message and "'linear'" in message
    with pytest.raises(InvalidArgumentError, match="logsnr_min=5"):
        logsnr_cosine(torch.tensor([0.5]), 5.0, 1.0)


# -- timestep grids ------------------------------------------------------------------------------
def test_uniform_timesteps_grid():
    grid = uniform_timesteps(4)
    torch.testing.assert_close(grid, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    grid = uniform_timesteps(10, t_max=0.9, t_min=0.1)
    assert grid.shape == (11,) and float(grid[0]) == pytest.approx(0.9)
    assert float(grid[-1]) == pytest.approx(0.1) and bool((grid.diff() < 0).all())


def test_uniform_timesteps_bad_arguments():
    with pytest.raises(InvalidArgumentError) as err:
        uniform_timesteps(0)
    assert "steps=0" in str(err.value) and ">= 1" in str(err.value)
    with pytest.raises(InvalidTypeError, match="steps must be an int >= 1, got float"):
        uniform_timesteps(2.5)
    with pytest.raises(InvalidArgumentError, match=r"0 <= t_min < t_max <= 1"):
        uniform_timesteps(5, t_max=0.2, t_min=0.5)


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
