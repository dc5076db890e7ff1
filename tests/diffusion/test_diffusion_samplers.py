"""Samplers on Gaussian mixtures, where the optimal denoiser E[x0 | x_t] is exact.

With the exact denoiser, the only errors left are the sampler's own discretisation error and
Monte-Carlo noise, so we can check that samples have the true mean and variance, and that
DPM-Solver++(2M) is a 2nd-order and DDIM a 1st-order solver of the probability-flow ODE.
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusion_gmm import GaussianMixture

from openimagen.diffusion import (
    SAMPLERS,
    apply_threshold,
    classifier_free_guidance,
    ddim,
    ddpm,
    dpm_solver_pp_2m,
    get_sampler,
    get_schedule,
    randn_per_sample,
    uniform_timesteps,
)
from openimagen.errors import InvalidArgumentError, InvalidTypeError, ShapeError

SCHEDULE = get_schedule("cosine")
# Two well-separated modes in 1-D; three modes with different spreads per dimension in 2-D.
GMM_1D = GaussianMixture([0.3, 0.7], [[-0.5], [0.4]], [[0.2], [0.3]])
GMM_2D = GaussianMixture(
    [0.25, 0.45, 0.3],
    [[-0.5, 0.4], [0.4, 0.3], [0.1, -0.5]],
    [[0.2, 0.25], [0.25, 0.15], [0.2, 0.2]],
)
N_SAMPLES = 20000

# Tolerance = 4 Monte-Carlo standard errors + an allowance for the sampler's discretisation
# bias at that step count. The standard errors are exact for the mixture (diffusion_gmm:
# sd / sqrt(n) for the mean, sqrt((mu_4 - var^2) / n) for the variance); at n = 20000 they are
# 0.7 % of sd for the mean and 0.7-0.85 % of var for the variance, so 4 SE is ~2.8 % / ~3.4 %:
# a correct sampler fails the MC part with probability < 1e-4 per check.
# Allowances (relative variance): DDIM is a 1st-order ODE solver and at 20 uniform steps on the
# cosine schedule it shrinks the variance by ~12 % here (DDIM's known behaviour at few steps;
# it matches diffusers' DDIM to 1e-5, see test_diffusion_diffusers.py), ~5 % at 50 steps;
# ancestral DDPM at 250 steps is ~2 % low; DPM-Solver++(2M) is within ~1 % at 20 steps.
MEAN_ALLOWANCE = 0.01  # in units of the true sd, all samplers
VAR_ALLOWANCE = {
    ("ddpm", 250): 0.03,
    ("ddim", 20): 0.15,
    ("ddim", 50): 0.07,
    ("dpmpp_2m", 20): 0.02,
    ("dpmpp_2m", 50): 0.02,
}


def _x_T(gm: GaussianMixture, n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(
        n, gm.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def _run(name: str, steps: int, gm: GaussianMixture, n: int = N_SAMPLES, **kwargs) -> torch.Tensor:
    grid = uniform_timesteps(steps).double()
    return get_sampler(name)(
        gm.denoiser(SCHEDULE),
        _x_T(gm, n),
        grid,
        schedule=SCHEDULE,
        generator=torch.Generator().manual_seed(10),
        **kwargs,
    )


@pytest.mark.parametrize("gm", [GMM_1D, GMM_2D], ids=["1d", "2d"])
@pytest.mark.parametrize(("name", "steps"), list(VAR_ALLOWANCE))
def test_sampler_matches_true_mean_and_variance(gm, name, steps):
    samples = _run(name, steps, gm)  # [n, D]
    se_mean, se_var = gm.standard_errors(N_SAMPLES)
    sd, var = gm.var().sqrt(), gm.var()
    mean_err = (samples.mean(0) - gm.mean()).abs()  # [D]
    var_err = (samples.var(0) - var).abs()  # [D]
    assert bool((mean_err <= 4 * se_mean + MEAN_ALLOWANCE * sd).all()), (mean_err / sd).tolist()
    assert bool((var_err <= 4 * se_var + VAR_ALLOWANCE[(name, steps)] * var).all()), (
        var_err / var
    ).tolist()


def test_dpm_solver_closer_than_ddim_at_20_steps_in_w2():
    # Same x_T for both, so the Monte-Carlo part of each distance is shared. W2 to the true
    # law uses the exact mixture quantiles (1-D).
    w2_ddim = GMM_1D.w2_to_samples(_run("ddim", 20, GMM_1D)[:, 0])
    w2_dpm = GMM_1D.w2_to_samples(_run("dpmpp_2m", 20, GMM_1D)[:, 0])
    assert w2_dpm <= w2_ddim, (w2_dpm, w2_ddim)


@pytest.mark.parametrize("gm", [GMM_1D, GMM_2D], ids=["1d", "2d"])
def test_ode_solvers_converge_with_their_order(gm):
    # Deterministic samplers map x_T to x_0 through the probability-flow ODE. Reference: DPM++
    # at 1000 steps (error ~(20/1000)^2 of the 20-step error). Per-sample RMS errors at 20
    # and 50 steps give the empirical order log(e20 / e50) / log(2.5): ~1 for DDIM and ~2 for
    # DPM-Solver++(2M) (Lu et al. 2022, Thm. 4.1 / Song et al. 2021).
    n = 2000
    x_T, grid = _x_T(gm, n, seed=5), lambda s: uniform_timesteps(s).double()
    den = gm.denoiser(SCHEDULE)
    ref = dpm_solver_pp_2m(den, x_T, grid(1000), schedule=SCHEDULE)
    # DDIM converges to the same ODE solution (its 1000-step error is ~1e-3).
    assert (
        float((ddim(den, x_T, grid(1000), schedule=SCHEDULE) - ref).square().mean().sqrt()) < 3e-3
    )

    def rms(sampler, steps):
        return float(
            (sampler(den, x_T, grid(steps), schedule=SCHEDULE) - ref).square().mean().sqrt()
        )

    ddim_20, ddim_50 = rms(ddim, 20), rms(ddim, 50)
    dpm_20, dpm_50 = rms(dpm_solver_pp_2m, 20), rms(dpm_solver_pp_2m, 50)
    order_ddim = math.log(ddim_20 / ddim_50) / math.log(2.5)
    order_dpm = math.log(dpm_20 / dpm_50) / math.log(2.5)
    assert 0.7 <= order_ddim <= 1.4, order_ddim
    assert 1.6 <= order_dpm <= 2.8, order_dpm
    assert dpm_20 < ddim_20 and dpm_50 < 0.5 * ddim_50


# -- randomness ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "kwargs"), [("ddpm", {}), ("ddim", {"eta": 0.5})])
def test_sample_i_depends_only_on_seed_i(name, kwargs):
    grid = uniform_timesteps(30).double()
    den = GMM_2D.denoiser(SCHEDULE)

    def draw(seeds):
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        x_T = randn_per_sample((len(seeds), 2), gens, dtype=torch.float64)
        return get_sampler(name)(den, x_T, grid, schedule=SCHEDULE, generator=gens, **kwargs)

    batch = draw([7, 11, 13, 17])  # [4, 2]
    alone = draw([13])  # [1, 2]
    assert torch.equal(batch[2:3], alone)
    assert not torch.equal(batch[0], batch[1])


def test_randn_per_sample_rows_and_single_generator():
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    rows = randn_per_sample((2, 3, 4), gens, dtype=torch.float32)
    assert rows.shape == (2, 3, 4) and rows.dtype == torch.float32
    assert torch.equal(rows[1], torch.randn(3, 4, generator=torch.Generator().manual_seed(2)))
    single = randn_per_sample((2, 3), torch.Generator().manual_seed(9), dtype=torch.float64)
    assert torch.equal(
        single, torch.randn(2, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    )


def test_ddim_eta_one_is_ddpm():
    # Song et al. 2021, eq. 16: eta = 1 gives the DDPM posterior variance; with the same
    # generator both draw the same noise, so they agree up to rounding.
    a = _run("ddim", 40, GMM_1D, n=500, eta=1.0)
    b = _run("ddpm", 40, GMM_1D, n=500)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


# -- the calling convention ----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_denoiser_calls_callback_and_final_x0(name):
    grid = uniform_timesteps(6).double()
    seen_t, events = [], []

    def den(x, t, cond):
        assert cond == {"tag": 1}
        seen_t.append(t.clone())
        return torch.tanh(x) * 0.5

    def callback(i, total, x_t, x0_hat):
        events.append((i, total, x_t.shape, x0_hat.clone()))

    x_T = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = get_sampler(name)(
        den,
        x_T,
        grid,
        schedule=SCHEDULE,
        generator=torch.Generator().manual_seed(1),
        callback=callback,
        cond={"tag": 1},
    )
    assert len(seen_t) == 6  # one denoiser call per step
    for i, t in enumerate(seen_t):
        assert t.shape == (3,) and bool((t == grid[i]).all())
    assert [(i, total) for i, total, *_ in events] == [(i, 6) for i in range(6)]
    assert events[0][2] == (3, 2)
    assert torch.equal(out, events[-1][3])  # the last step returns x0_hat, no noise


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_guided_thresholded_denoiser_through_a_sampler(name):
    # The composition the cascade uses: one batched [2B] forward per step, output in [-1, 1].
    calls = []

    def den(x, t, cond):  # cond: [B, 1] text stand-in; pushes x0 far outside [-1, 1]
        calls.append(x.shape[0])
        return 3.0 * torch.tanh(x) + cond

    cond, uncond = torch.full((4, 1), 2.0), torch.zeros(4, 1)
    guided = apply_threshold(classifier_free_guidance(den, 5.0, uncond), "dynamic", 99.5)
    x_T = torch.randn(4, 1, generator=torch.Generator().manual_seed(2))
    out = get_sampler(name)(
        guided,
        x_T,
        uniform_timesteps(8),
        schedule=SCHEDULE,
        cond=cond,
        generator=[torch.Generator().manual_seed(i) for i in range(4)],
    )
    assert calls == [8] * 8
    assert out.abs().max() <= 1.0 and bool(torch.isfinite(out).all())


# -- bad arguments -------------------------------------------------------------------------------
def _den(x, t, cond):
    return x


def test_unknown_sampler_lists_allowed():
    with pytest.raises(InvalidArgumentError) as err:
        get_sampler("euler")
    assert "sampler='euler'" in str(err.value)
    assert all(f"'{name}'" in str(err.value) for name in ("ddpm", "ddim", "dpmpp_2m"))
    assert get_sampler("ddim") is ddim and get_sampler("dpmpp_2m") is dpm_solver_pp_2m
    assert get_sampler("ddpm") is ddpm


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_bad_timesteps(name):
    x = torch.zeros(2, 3)
    sampler = get_sampler(name)
    with pytest.raises(InvalidArgumentError, match=r"timesteps=\[0.0, 0.5, 1.0\].*decreasing"):
        sampler(_den, x, torch.tensor([0.0, 0.5, 1.0]), schedule=SCHEDULE)
    with pytest.raises(ShapeError, match=r"timesteps.shape=\(1,\).*steps >= 1"):
        sampler(_den, x, torch.tensor([1.0]), schedule=SCHEDULE)
    with pytest.raises(ShapeError, match=r"timesteps.shape=\(2, 2\)"):
        sampler(_den, x, torch.ones(2, 2), schedule=SCHEDULE)
    with pytest.raises(InvalidArgumentError, match=r"timesteps=\[1.5, 0.0\].*\[0, 1\]"):
        sampler(_den, x, torch.tensor([1.5, 0.0]), schedule=SCHEDULE)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_bad_x_T_and_generators(name):
    sampler, grid = get_sampler(name), uniform_timesteps(3)
    with pytest.raises(InvalidArgumentError, match=r"x_T.dtype=torch.int64.*floating"):
        sampler(_den, torch.zeros(2, 3, dtype=torch.long), grid, schedule=SCHEDULE)
    with pytest.raises(InvalidTypeError, match="x_T must be a floating-point torch.Tensor"):
        sampler(_den, [[0.0]], grid, schedule=SCHEDULE)
    with pytest.raises(ShapeError, match=r"x_T.shape=\(\).*batch dimension"):
        sampler(_den, torch.tensor(0.0), grid, schedule=SCHEDULE)
    gens = [torch.Generator() for _ in range(3)]
    with pytest.raises(InvalidArgumentError, match=r"len\(generator\)=3.*batch size 2"):
        sampler(_den, torch.zeros(2, 3), grid, schedule=SCHEDULE, generator=gens)
    with pytest.raises(ShapeError, match=r"denoiser output.shape=\(2, 1\).*\(2, 3\)"):
        sampler(lambda x, t, c: x[:, :1], torch.zeros(2, 3), grid, schedule=SCHEDULE)


def test_steps_below_one_and_bad_eta():
    with pytest.raises(InvalidArgumentError, match="steps=0"):
        uniform_timesteps(0)
    for eta in (-0.1, 1.5, float("nan")):
        with pytest.raises(InvalidArgumentError, match=rf"eta={eta}.*\[0, 1\]"):
            ddim(_den, torch.zeros(2, 3), uniform_timesteps(3), schedule=SCHEDULE, eta=eta)
    with pytest.raises(InvalidArgumentError, match=r"len\(generator\)=1.*batch size 2"):
        ddpm(
            _den,
            torch.zeros(2, 3),
            uniform_timesteps(3),
            schedule=SCHEDULE,
            generator=[torch.Generator()],
        )
