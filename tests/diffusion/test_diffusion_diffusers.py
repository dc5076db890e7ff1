"""Our samplers and dynamic thresholding against Hugging Face diffusers (an independent
implementation; a test-only dependency) on the same analytic denoiser and the same inputs.

diffusers works on a discrete grid of 1000 training steps k = 0..999 with cumulative
products alphas_cumprod[k]. We give it betas derived from our continuous schedule so that
alphas_cumprod[k] = sigmoid(logsnr((k + 1) / 1000)), run its scheduler, and run ours on exactly
the times (k + 1) / 1000 it visits, then t = 0 where it steps to the clean end
(set_alpha_to_one / final_sigmas_type="zero"). diffusers keeps alphas_cumprod in float32 and
upcasts DPM-Solver steps to float32, so agreement is ~1e-5; we require 1e-4 relative.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusion_gmm import GaussianMixture

from openimagen.diffusion import (
    SCHEDULES,
    ddim,
    dpm_solver_pp_2m,
    dynamic_threshold_x0,
    get_schedule,
)

TRAIN_STEPS = 1000
# diffusers' own numpy-2 DeprecationWarning (copy=False in np.array), not ours
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

GMM = GaussianMixture(
    [0.25, 0.45, 0.3],
    [[-0.5, 0.4], [0.4, 0.3], [0.1, -0.5]],
    [[0.2, 0.25], [0.25, 0.15], [0.2, 0.2]],
)


def _betas(schedule) -> torch.Tensor:
    t = torch.arange(1, TRAIN_STEPS + 1, dtype=torch.float64) / TRAIN_STEPS  # step k at (k+1)/T
    alphas_cumprod = torch.sigmoid(schedule(t))  # [T]
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    return 1.0 - alphas_cumprod / previous  # [T]


def _run_diffusers(scheduler, denoiser, x_T):
    x = x_T.clone()
    for k in scheduler.timesteps:
        t = torch.full((x.shape[0],), (int(k) + 1) / TRAIN_STEPS, dtype=torch.float64)
        x = scheduler.step(denoiser(x, t, None), k, x).prev_sample
    grid = [(int(k) + 1) / TRAIN_STEPS for k in scheduler.timesteps] + [0.0]
    return x, torch.tensor(grid, dtype=torch.float64)


def _relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


def _x_T() -> torch.Tensor:
    return torch.randn(512, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("schedule_name", SCHEDULES)
@pytest.mark.parametrize("steps", [10, 20, 50])
def test_ddim_matches_diffusers(schedule_name, steps):
    schedule = get_schedule(schedule_name)
    scheduler = DDIMScheduler(
        num_train_timesteps=TRAIN_STEPS,
        trained_betas=_betas(schedule).numpy(),
        clip_sample=False,  # diffusers clips x0 by default; our denoiser has no thresholding
        set_alpha_to_one=True,  # the last step goes to alpha = 1: returns x0_hat
        prediction_type="sample",  # the model output is x0_hat, like our denoiser
        timestep_spacing="leading",
        steps_offset=0,
    )
    scheduler.set_timesteps(steps)
    denoiser = GMM.denoiser(schedule)
    theirs, grid = _run_diffusers(scheduler, denoiser, _x_T())
    assert grid.shape == (steps + 1,)
    ours = ddim(denoiser, _x_T(), grid, schedule=schedule, eta=0.0)
    assert _relative_error(ours, theirs) < 1e-4


@pytest.mark.parametrize("schedule_name", SCHEDULES)
@pytest.mark.parametrize("steps", [10, 20, 50])
def test_dpm_solver_pp_2m_matches_diffusers(schedule_name, steps):
    schedule = get_schedule(schedule_name)
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=TRAIN_STEPS,
        trained_betas=_betas(schedule).numpy(),
        prediction_type="sample",
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",  # Lu et al. 2022, Algorithm 2
        lower_order_final=True,
        final_sigmas_type="zero",  # the last step goes to sigma = 0: returns x0_hat
        timestep_spacing="linspace",
        thresholding=False,
    )
    scheduler.set_timesteps(steps)
    denoiser = GMM.denoiser(schedule)
    theirs, grid = _run_diffusers(scheduler, denoiser, _x_T())
    assert grid.shape == (steps + 1,)
    ours = dpm_solver_pp_2m(denoiser, _x_T(), grid, schedule=schedule)
    assert _relative_error(ours, theirs) < 1e-4
    # and the comparison is sharp: a 1st-order solver on the same grid is far off
    assert _relative_error(ddim(denoiser, _x_T(), grid, schedule=schedule), theirs) > 1e-3


@pytest.mark.parametrize("percentile", [50.0, 90.0, 99.5, 100.0])
def test_dynamic_threshold_matches_diffusers(percentile):
    gen = torch.Generator().manual_seed(int(percentile))
    x0 = torch.randn(6, 3, 8, 8, generator=gen) * torch.tensor(
        [0.3, 0.8, 1.5, 3.0, 10.0, 0.1]
    ).view(-1, 1, 1, 1)  # some samples inside [-1, 1], some far outside
    scheduler = DDPMScheduler(
        thresholding=True,
        dynamic_thresholding_ratio=percentile / 100.0,
        sample_max_value=1e6,  # no upper cap on s, as in Imagen
    )
    theirs = scheduler._threshold_sample(x0.clone())
    torch.testing.assert_close(dynamic_threshold_x0(x0, percentile), theirs, rtol=1e-6, atol=1e-7)
