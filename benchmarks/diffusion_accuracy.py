"""Measured accuracy of the diffusion samplers, on the settings tests/diffusion uses.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/diffusion_accuracy.py

Prints markdown for docs/diffusion.md. Everything is deterministic (fixed seeds, float64, one
thread), so a rerun prints the same numbers. Three parts:

1. Moments: each sampler/steps setting of tests/diffusion/test_diffusion_samplers.py on its 1-D
   and 2-D Gaussian mixtures, with the exact denoiser E[x0 | x_t], the same n, start noise and
   seeds (the test's own ``_run``): error of the sample mean (in units of the true sd) and
   relative error of the sample variance, beside the bound the test asserts.
2. W2 to the true 1-D law for each setting, and for n exact draws from the mixture (the
   Monte-Carlo floor a perfect sampler would show).
3. Agreement with diffusers' DDIMScheduler / DPMSolverMultistepScheduler on the same analytic
   denoiser, grid and start noise, and of dynamic thresholding with diffusers'
   ``_threshold_sample`` (the inputs and scheduler settings of test_diffusion_diffusers.py).

The mixtures, seeds and helpers are imported from tests/diffusion, not copied; only the two
scheduler configurations are repeated here, because the tests build them inside test functions.
"""

from __future__ import annotations

import datetime
import sys
import time
import warnings
from pathlib import Path

import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "diffusion"))

import diffusers  # noqa: E402
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler  # noqa: E402
from test_diffusion_diffusers import (  # noqa: E402
    GMM,
    TRAIN_STEPS,
    _betas,
    _relative_error,
    _run_diffusers,
    _x_T,
)
from test_diffusion_samplers import (  # noqa: E402
    GMM_1D,
    GMM_2D,
    MEAN_ALLOWANCE,
    N_SAMPLES,
    SCHEDULE,
    VAR_ALLOWANCE,
    _run,
)
from test_diffusion_samplers import _x_T as start_noise  # noqa: E402

from openimagen.diffusion import (  # noqa: E402
    SCHEDULES,
    ddim,
    dpm_solver_pp_2m,
    dynamic_threshold_x0,
    get_schedule,
)

# diffusers' own numpy-2 DeprecationWarning (copy=False in np.array), as in the test
warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)

AGREEMENT_STEPS = (10, 20, 50)  # test_diffusion_diffusers.py
PERCENTILES = (50.0, 90.0, 99.5, 100.0)  # test_dynamic_threshold_matches_diffusers
# Not a test setting: DPM-Solver++(2M) at 1000 steps is the probability-flow ODE's own answer
# for the shared x_T (discretisation error ~(20/1000)^2 of the 20-step one), which separates
# each deterministic sampler's discretisation error from the Monte-Carlo part.
ODE_REFERENCE = ("dpmpp_2m", 1000)


# -- 1. and 2. samples against the true mixture -------------------------------------------------
def moments_and_w2() -> tuple[list[str], list[str], str]:
    moment_rows, w2_rows = [], []
    w2_exact = GMM_1D.w2_to_samples(
        GMM_1D.sample(N_SAMPLES, torch.Generator().manual_seed(0))[:, 0]
    )
    for label, gm in (("1-D", GMM_1D), ("2-D", GMM_2D)):
        se_mean, se_var = gm.standard_errors(N_SAMPLES)
        sd, var = gm.var().sqrt(), gm.var()
        for name, steps in [*VAR_ALLOWANCE, ODE_REFERENCE]:
            samples = _run(name, steps, gm)  # [n, D]
            # per dimension, then the worst one; the bounds are the test's assertions
            mean_err = (samples.mean(0) - gm.mean()).abs() / sd  # [D]
            var_err = (samples.var(0) - var) / var  # [D], signed
            mean_bound = (4 * se_mean + MEAN_ALLOWANCE * sd) / sd  # [D]
            worst = int(var_err.abs().argmax())
            if (name, steps) in VAR_ALLOWANCE:
                var_bound = 4 * se_var / var + VAR_ALLOWANCE[(name, steps)]  # [D]
                passed = (mean_err <= mean_bound).all() and (var_err.abs() <= var_bound).all()
                bounds = f"{float(mean_bound.min()):.4f}", f"{float(var_bound[worst]):.4f}"
                verdict = "yes" if bool(passed) else "NO"
            else:
                bounds, verdict, name = ("-", "-"), "-", f"{name} (ODE reference)"
            moment_rows.append(
                f"| {label} | {name} | {steps} | {float(mean_err.max()):.4f} | {bounds[0]} | "
                f"{float(var_err[worst]):+.4f} | {bounds[1]} | {verdict} |"
            )
            if gm is GMM_1D:
                w2 = GMM_1D.w2_to_samples(samples[:, 0])
                w2_rows.append(f"| {name} | {steps} | {w2:.4f} |")
    w2_rows.append(f"| exact draws (Monte-Carlo floor) | - | {w2_exact:.4f} |")
    # the deterministic samplers map this one draw of x_T, so they share its sampling error
    noise_var = [
        ", ".join(f"{v - 1:+.4f}" for v in start_noise(gm, N_SAMPLES).var(0).tolist())
        for gm in (GMM_1D, GMM_2D)
    ]
    note = f"Sample variance - 1 of the shared start noise x_T: 1-D {noise_var[0]}; 2-D {noise_var[1]}."
    return moment_rows, w2_rows, note


# -- 3. agreement with diffusers ----------------------------------------------------------------
def ddim_scheduler(schedule) -> DDIMScheduler:
    # the configuration of test_ddim_matches_diffusers
    return DDIMScheduler(
        num_train_timesteps=TRAIN_STEPS,
        trained_betas=_betas(schedule).numpy(),
        clip_sample=False,
        set_alpha_to_one=True,
        prediction_type="sample",
        timestep_spacing="leading",
        steps_offset=0,
    )


def dpm_scheduler(schedule) -> DPMSolverMultistepScheduler:
    # the configuration of test_dpm_solver_pp_2m_matches_diffusers
    return DPMSolverMultistepScheduler(
        num_train_timesteps=TRAIN_STEPS,
        trained_betas=_betas(schedule).numpy(),
        prediction_type="sample",
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        lower_order_final=True,
        final_sigmas_type="zero",
        timestep_spacing="linspace",
        thresholding=False,
    )


def sampler_agreement() -> list[str]:
    rows = []
    for schedule_name in SCHEDULES:
        schedule = get_schedule(schedule_name)
        denoiser = GMM.denoiser(schedule)
        for steps in AGREEMENT_STEPS:
            scheduler = ddim_scheduler(schedule)
            scheduler.set_timesteps(steps)
            theirs, grid = _run_diffusers(scheduler, denoiser, _x_T())
            ours = ddim(denoiser, _x_T(), grid, schedule=schedule, eta=0.0)
            ddim_diff = _relative_error(ours, theirs)

            scheduler = dpm_scheduler(schedule)
            scheduler.set_timesteps(steps)
            theirs, grid = _run_diffusers(scheduler, denoiser, _x_T())
            ours = dpm_solver_pp_2m(denoiser, _x_T(), grid, schedule=schedule)
            dpm_diff = _relative_error(ours, theirs)
            # the comparison is sharp: a 1st-order solver on the same grid is far off
            first_order = _relative_error(ddim(denoiser, _x_T(), grid, schedule=schedule), theirs)
            rows.append(
                f"| {schedule_name} | {steps} | {ddim_diff:.1e} | {dpm_diff:.1e} | "
                f"{first_order:.1e} |"
            )
    return rows


def threshold_agreement() -> list[str]:
    rows = []
    for percentile in PERCENTILES:
        # the inputs of test_dynamic_threshold_matches_diffusers
        gen = torch.Generator().manual_seed(int(percentile))
        x0 = torch.randn(6, 3, 8, 8, generator=gen) * torch.tensor(
            [0.3, 0.8, 1.5, 3.0, 10.0, 0.1]
        ).view(-1, 1, 1, 1)  # [6, 3, 8, 8]
        scheduler = DDPMScheduler(
            thresholding=True,
            dynamic_thresholding_ratio=percentile / 100.0,
            sample_max_value=1e6,
        )
        theirs = scheduler._threshold_sample(x0.clone())
        ours = dynamic_threshold_x0(x0, percentile)
        diff = float((ours - theirs).abs().max())
        rows.append(f"| {percentile} | {diff:.1e} | {_relative_error(ours, theirs):.1e} |")
    return rows


def main() -> None:
    start = time.perf_counter()
    moment_rows, w2_rows, noise_note = moments_and_w2()
    sampler_rows = sampler_agreement()
    threshold_rows = threshold_agreement()
    seconds = time.perf_counter() - start
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    schedule = "cosine" if SCHEDULE is get_schedule("cosine") else "linear"
    lines = [
        f"Measured {now}; torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"float64, 1 thread, {seconds:.0f} s.",
        "",
        f"### Sample moments ({schedule} schedule, uniform grid, n = {N_SAMPLES}, exact denoiser)",
        "",
        "Mean error = |sample mean - true mean| / true sd; variance error = (sample variance -"
        " true variance) / true variance. 2-D rows show the worst dimension. Bound = what the"
        " test asserts (4 Monte-Carlo standard errors + the sampler's allowance).",
        "",
        "| mixture | sampler | steps | mean error | bound | variance error | bound | in bound |",
        "|---|---|---|---|---|---|---|---|",
        *moment_rows,
        "",
        noise_note,
        "",
        f"### W2 distance to the true 1-D mixture (n = {N_SAMPLES})",
        "",
        "| sampler | steps | W2 |",
        "|---|---|---|",
        *w2_rows,
        "",
        "### Agreement with diffusers (512 samples of the 2-D mixture, same grid and x_T)",
        "",
        "max |ours - diffusers| / max |diffusers|. Last column: our DDIM on the DPM-Solver grid"
        " against diffusers' DPM-Solver++(2M), to show the comparison can fail.",
        "",
        "| schedule | steps | DDIM vs DDIMScheduler | DPM++(2M) vs DPMSolverMultistepScheduler"
        " | DDIM vs DPMSolverMultistepScheduler |",
        "|---|---|---|---|---|",
        *sampler_rows,
        "",
        "### Dynamic thresholding vs diffusers `_threshold_sample` (x0 [6, 3, 8, 8])",
        "",
        "| percentile | max abs difference | max relative difference |",
        "|---|---|---|",
        *threshold_rows,
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
