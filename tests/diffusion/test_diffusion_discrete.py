"""Discrete-time schedules (DeepFloyd IF's 1000-step squaredcos_cap_v2) on the continuous core,
dynamic thresholding's upper bound, extra output channels, and DDPM's learned variance.

The references are diffusers' schedulers (an independent implementation, tests only): their
``alphas_cumprod`` tables and the timesteps ``set_timesteps`` picks, and the learned-range
variance rule of Nichol & Dhariwal (2021, eq. 15) written out here from the paper.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

from openimagen.diffusion import (
    alpha_sigma,
    ddpm,
    discrete_index,
    discrete_schedule,
    discrete_timesteps,
    dynamic_threshold_x0,
    split_extra,
)
from openimagen.errors import InvalidArgumentError, ShapeError

N = 1000
# diffusers' own numpy-2 DeprecationWarning (copy=False in np.array), not ours
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.mark.parametrize("beta_schedule", ["squaredcos_cap_v2", "linear"])
def test_discrete_schedule_hits_diffusers_alphas_cumprod_at_every_timestep(beta_schedule):
    reference = DDPMScheduler(num_train_timesteps=N, beta_schedule=beta_schedule).alphas_cumprod
    t = (torch.arange(N, dtype=torch.float64) + 1.0) / N  # timestep k at t = (k + 1) / N
    alpha, _ = alpha_sigma(discrete_schedule(beta_schedule, N)(t))
    torch.testing.assert_close(alpha**2, reference.double(), rtol=1e-12, atol=1e-12)
    # what the network is fed at those times: the integer timestep itself
    assert torch.equal(discrete_index(t, N), torch.arange(N, dtype=torch.float64))


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
@pytest.mark.parametrize("steps", [1, 7, 50, 100])
def test_discrete_timesteps_visit_what_diffusers_schedulers_visit(spacing, steps):
    for kind, cls in (("ddpm", DDPMScheduler), ("dpmsolver", DPMSolverMultistepScheduler)):
        scheduler = cls(num_train_timesteps=N, timestep_spacing=spacing)
        scheduler.set_timesteps(steps)
        grid = discrete_timesteps(steps, num_train_timesteps=N, spacing=spacing, kind=kind)
        assert grid[-1] == 0.0 and grid.shape == (steps + 1,)  # ends at the clean image
        assert discrete_index(grid[:-1], N).long().tolist() == scheduler.timesteps.tolist()


def test_discrete_timesteps_refuse_more_steps_than_the_model_has():
    with pytest.raises(InvalidArgumentError, match="at most 1000 distinct timesteps"):
        discrete_timesteps(1001, num_train_timesteps=N, spacing="leading")


def test_dynamic_threshold_max_value_caps_s():
    x0 = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 3.0
    s = torch.quantile(x0.reshape(4, -1).abs(), 0.95, dim=1)  # all well above 1.5 here
    assert bool((s > 1.5).all())
    capped = dynamic_threshold_x0(x0, 95.0, max_value=1.5)
    torch.testing.assert_close(capped, x0.clamp(-1.5, 1.5) / 1.5)
    free = dynamic_threshold_x0(x0, 95.0)  # unbounded: s is the percentile itself
    torch.testing.assert_close(free, torch.maximum(torch.minimum(x0, s.view(-1, 1, 1, 1)),
                                                   -s.view(-1, 1, 1, 1)) / s.view(-1, 1, 1, 1))  # fmt: skip
    with pytest.raises(InvalidArgumentError):
        dynamic_threshold_x0(x0, 95.0, max_value=0.5)


def test_split_extra_channels():
    x_t = torch.zeros(2, 3, 4, 4)
    x0, extra = split_extra(torch.arange(2 * 6 * 16.0).reshape(2, 6, 4, 4), x_t)
    assert x0.shape == extra.shape == (2, 3, 4, 4) and extra[0, 0, 0, 0] == 48.0
    assert split_extra(x_t, x_t)[1] is None
    with pytest.raises(ShapeError):
        split_extra(torch.zeros(2, 2, 4, 4), x_t)  # fewer channels than x_t


@pytest.mark.parametrize("v", [-1.0, 1.0, 0.3])
def test_ddpm_learned_variance_interpolates_the_log_variance(v):
    """One DDPM step with learned-range head v: log var = (v+1)/2 log beta + (1-v)/2 log
    posterior variance (Improved DDPM eq. 15), beta = 1 - alpha_bar_t / alpha_bar_s."""
    schedule = discrete_schedule("squaredcos_cap_v2", N)
    grid = discrete_timesteps(2, num_train_timesteps=N, spacing="leading")[:2].tolist()
    timesteps = torch.tensor([*grid, 0.0], dtype=torch.float64)  # two steps: t -> s -> 0
    x_T = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x0_const = torch.full_like(x_T, 0.25)

    def denoiser(x, t, cond):
        return torch.cat([x0_const, torch.full_like(x, v)], dim=1)

    seen = []
    out = ddpm(denoiser, x_T, timesteps, schedule=schedule, learned_variance=True,
               generator=torch.Generator().manual_seed(2),
               callback=lambda i, n, x, x0: seen.append(x))  # fmt: skip
    assert torch.equal(out, x0_const)
    # the same step by hand, on diffusers' tables
    bar = DDPMScheduler(num_train_timesteps=N, beta_schedule="squaredcos_cap_v2").alphas_cumprod
    kt, ks = (round(t * N - 1) for t in grid)
    at, as_ = bar[kt].double(), bar[ks].double()
    beta = 1 - at / as_
    post = (1 - as_) / (1 - at) * beta
    mean = (as_.sqrt() * beta / (1 - at)) * x0_const + ((1 - beta).sqrt() * (1 - as_) / (1 - at)) * x_T
    log_var = (v + 1) / 2 * beta.log() + (1 - v) / 2 * post.log()
    noise = torch.randn(x_T.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(seen[1], mean + (0.5 * log_var).exp() * noise, rtol=1e-6, atol=1e-6)
