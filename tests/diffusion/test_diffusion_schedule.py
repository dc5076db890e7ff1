"""Log-SNR schedules and timestep grids (diffusion/schedule.py)."""

from __future__ import annotations

import math

import pytest
import torch

from openimagen.diffusion import (
    SCHEDULES,
    alpha_sigma,
    get_schedule,
    logsnr_cosine,
    logsnr_linear,
    uniform_timesteps,
)
from openimagen.errors import InvalidArgumentError, InvalidTypeError

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
