"""Samplers: pure functions from (denoiser, x_T, timesteps) to samples, with no hidden state.

Every sampler walks a decreasing grid of continuous times ``timesteps`` [N + 1] (from
:mod:`openimagen.diffusion.schedule`): step i goes from t = timesteps[i] to
s = timesteps[i + 1]; the denoiser is called once per step as ``denoiser(x_t, t [B], cond)``
and the last step returns its x0_hat (no noise), so N steps make N denoiser calls.
``callback(i, N, x_t, x0_hat)``, if given, is called once per step with the step's input x_t
and the denoiser's x0_hat (e.g. for a progress bar or previews).

Notation (Kingma et al. 2021, VDM): lambda = log-SNR = schedule(t), alpha^2 = sigmoid(lambda),
sigma^2 = sigmoid(-lambda); subscripts t (current, noisier) and s (next, cleaner).

Randomness: ``generator`` is None, one ``torch.Generator``, or a list of B generators, one per
sample; with a list, sample i draws only from generators[i], so image i depends only on its
own seed whatever the batch it is drawn in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from openimagen.diffusion.guidance import Denoiser, split_extra
from openimagen.diffusion.names import SAMPLER_NAMES
from openimagen.diffusion.schedule import Schedule, alpha_sigma
from openimagen.errors import InvalidArgumentError, InvalidTypeError, ShapeError

GeneratorArg = torch.Generator | Sequence[torch.Generator] | None
Callback = Callable[[int, int, torch.Tensor, torch.Tensor], None]


# -- 1. randomness -----------------------------------------------------------------------------
def randn_per_sample(
    shape: Sequence[int],
    generator: GeneratorArg,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Standard normal noise of ``shape`` [B, ...]; with a list of B generators, row i uses only
    generators[i], so row i is the same whatever B is.

    Draws happen on each generator's own device (a CPU generator gives the same numbers for a
    CUDA run) in float32 (float64 if asked), then move to ``device`` and cast to ``dtype``.
    """
    shape = tuple(int(n) for n in shape)
    dtype = dtype or torch.get_default_dtype()
    draw_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = generator.device if generator is not None else device
        noise = torch.randn(shape, generator=generator, device=gen_device, dtype=draw_dtype)
        return noise.to(device=device, dtype=dtype)
    generators = _check_generators(generator, shape[0] if shape else None)
    rows = [
        torch.randn(shape[1:], generator=g, device=g.device, dtype=draw_dtype).to(device)
        for g in generators
    ]
    return torch.stack(rows).to(dtype=dtype)  # [B, ...]


def _check_generators(generator: Any, batch: int | None) -> Sequence[torch.Generator]:
    if not isinstance(generator, (list, tuple)) or not all(
        isinstance(g, torch.Generator) for g in generator
    ):
        raise InvalidTypeError(
            "generator", generator, "None, a torch.Generator or a list of torch.Generator"
        )
    if batch is None or len(generator) != batch:
        raise InvalidArgumentError(
            "len(generator)",
            len(generator),
            f"the batch size {batch} (one generator per sample)",
            "Pass one torch.Generator per sample, or a single one for the whole batch.",
        )
    return generator


# -- 2. input checks shared by all samplers ----------------------------------------------------
def _check_inputs(
    x_T: Any, timesteps: Any, generator: Any, callback: Any
) -> tuple[int, torch.Tensor]:
    """Validate the common arguments; returns the batch size and timesteps on x_T's device."""
    if not isinstance(x_T, torch.Tensor):
        raise InvalidTypeError("x_T", x_T, "a floating-point torch.Tensor [B, ...]")
    if not x_T.is_floating_point():
        raise InvalidArgumentError("x_T.dtype", x_T.dtype, "a floating-point dtype")
    if x_T.ndim < 1 or x_T.shape[0] < 1:
        raise ShapeError("x_T", tuple(x_T.shape), "[B, ...] with a batch dimension B >= 1")
    if not isinstance(timesteps, torch.Tensor):
        raise InvalidTypeError("timesteps", timesteps, "a 1-D float torch.Tensor of times")
    if timesteps.ndim != 1 or timesteps.shape[0] < 2:
        raise ShapeError(
            "timesteps",
            tuple(timesteps.shape),
            "[steps + 1] with steps >= 1 (e.g. uniform_timesteps(steps))",
        )
    if not timesteps.is_floating_point():
        raise InvalidArgumentError("timesteps.dtype", timesteps.dtype, "a floating-point dtype")
    values = timesteps.detach().cpu()
    if not (bool(torch.isfinite(values).all()) and values.min() >= 0 and values.max() <= 1):
        raise InvalidArgumentError("timesteps", values.tolist(), "finite times in [0, 1]")
    if not bool((values[1:] < values[:-1]).all()):
        raise InvalidArgumentError(
            "timesteps",
            values.tolist(),
            "a strictly decreasing grid (noisy t first, clean t last)",
            "Use uniform_timesteps(steps), which runs from 1 down to 0.",
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        _check_generators(generator, x_T.shape[0])
    if callback is not None and not callable(callback):
        raise InvalidTypeError("callback", callback, "None or callable(step, total, x_t, x0_hat)")
    return x_T.shape[0], timesteps.to(x_T.device)


def _denoise(
    denoiser: Denoiser, x: torch.Tensor, t: torch.Tensor, cond: Any
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x0_hat, extra channels or None) of denoiser(x [B, ...], t [B], cond), shape checked."""
    out = denoiser(x, t.repeat(x.shape[0]), cond)  # t: [] -> [B]
    if not isinstance(out, torch.Tensor):
        raise ShapeError("denoiser output", type(out), f"{tuple(x.shape)} (the shape of x_t)")
    return split_extra(out, x)  # [B, C, ...], [B, E, ...] or None


# update(i, x_t, x0_hat, extra) -> x_s: one sampler's rule for the step from timesteps[i] to
# [i + 1]; ``extra`` is the denoiser's extra output channels or None (diffusion/guidance.py)
StepRule = Callable[[int, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def _walk(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    timesteps: torch.Tensor,
    cond: Any,
    callback: Callback | None,
    update: StepRule,
) -> torch.Tensor:
    """The loop every sampler shares: denoise, report, then ``update``; the last step returns
    x0_hat itself (the step onto the clean end, alpha = 1 and sigma = 0)."""
    total = timesteps.shape[0] - 1
    x = x_T
    for i in range(total):
        x0_hat, extra = _denoise(denoiser, x, timesteps[i], cond)  # [B, ...], extras
        if callback is not None:
            callback(i, total, x, x0_hat)
        if i == total - 1:
            return x0_hat
        x = update(i, x, x0_hat, extra)
    raise AssertionError("unreachable: the loop returns at its last step")


# -- 3. samplers -------------------------------------------------------------------------------
def ddpm(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    timesteps: torch.Tensor,
    *,
    schedule: Schedule,
    generator: GeneratorArg = None,
    callback: Callback | None = None,
    cond: Any = None,
    learned_variance: bool = False,
) -> torch.Tensor:
    """Ancestral sampling (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", Alg. 2).

    Each step draws x_s from the posterior q(x_s | x_t, x0 = x0_hat) in its continuous-time
    form (Kingma et al. 2021, VDM, appendix A): with c = 1 - exp(lambda_t - lambda_s),
        mean = alpha_s ((1 - c) x_t / alpha_t + c x0_hat),   variance = sigma_s^2 c.
    With ``learned_variance`` the denoiser's extra channels v in [-1, 1] choose the variance
    between that one and beta = 1 - alpha_t^2 / alpha_s^2, log-linearly (Nichol & Dhariwal
    2021, "Improved DDPM", eq. 15; diffusers' "learned_range", as DeepFloyd IF samples):
        log variance = (v + 1) / 2 log beta + (1 - v) / 2 log max(sigma_s^2 c, 1e-20).
    """
    _, timesteps = _check_inputs(x_T, timesteps, generator, callback)
    logsnr = schedule(timesteps)  # [N + 1]
    alpha, sigma = alpha_sigma(logsnr)  # [N + 1] each

    def update(i: int, x: torch.Tensor, x0_hat: torch.Tensor, extra: Any) -> torch.Tensor:
        keep = torch.exp(logsnr[i] - logsnr[i + 1])  # 1 - c = SNR_t / SNR_s, in (0, 1)
        c = -torch.expm1(logsnr[i] - logsnr[i + 1])
        mean = alpha[i + 1] * (keep / alpha[i] * x + c * x0_hat)
        noise = randn_per_sample(x.shape, generator, device=x.device, dtype=x.dtype)
        if not learned_variance:
            return mean + sigma[i + 1] * c.sqrt() * noise
        if extra is None or extra.shape != x.shape:
            raise InvalidArgumentError(
                "learned_variance", True,
                f"a denoiser that returns {2 * x.shape[1]} channels (x0_hat, then the variance)",
                "Wrap the network with model_to_denoiser(..., learned_variance=True).",
            )  # fmt: skip
        min_log = torch.log((sigma[i + 1] ** 2 * c).clamp(min=1e-20))  # posterior variance
        # beta = 1 - alpha_t^2 / alpha_s^2, from the log-SNRs: log alpha^2 = logsigmoid(lambda)
        log_ratio = F.logsigmoid(logsnr[i]) - F.logsigmoid(logsnr[i + 1])
        max_log = torch.log(-torch.expm1(log_ratio))
        frac = (extra + 1.0) / 2.0  # [B, C, ...]
        log_variance = frac * max_log.to(x.dtype) + (1.0 - frac) * min_log.to(x.dtype)
        return mean + torch.exp(0.5 * log_variance) * noise

    return _walk(denoiser, x_T, timesteps, cond, callback, update)


def ddim(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    timesteps: torch.Tensor,
    *,
    schedule: Schedule,
    eta: float = 0.0,
    generator: GeneratorArg = None,
    callback: Callback | None = None,
    cond: Any = None,
) -> torch.Tensor:
    """DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 12 and eq. 16).

        x_s = alpha_s x0_hat + sqrt(sigma_s^2 - s_eta^2) eps_hat + s_eta z,
        eps_hat = (x_t - alpha_t x0_hat) / sigma_t,  s_eta = eta sigma_s sqrt(c),
    with c = 1 - exp(lambda_t - lambda_s) (eq. 16 in log-SNR form). eta = 0 is the
    deterministic DDIM (the probability-flow ODE's first-order solver); eta = 1 draws from the
    same posterior as :func:`ddpm`.
    """
    if isinstance(eta, bool) or not isinstance(eta, (int, float)):
        raise InvalidTypeError("eta", eta, "a float in [0, 1]")
    if not (math.isfinite(eta) and 0.0 <= eta <= 1.0):
        raise InvalidArgumentError(
            "eta", eta, "a number in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like noise)"
        )
    _, timesteps = _check_inputs(x_T, timesteps, generator, callback)
    logsnr = schedule(timesteps)  # [N + 1]
    alpha, sigma = alpha_sigma(logsnr)  # [N + 1] each

    def update(i: int, x: torch.Tensor, x0_hat: torch.Tensor, extra: Any) -> torch.Tensor:
        eps_hat = (x - alpha[i] * x0_hat) / sigma[i]
        if eta == 0.0:
            return alpha[i + 1] * x0_hat + sigma[i + 1] * eps_hat
        c = -torch.expm1(logsnr[i] - logsnr[i + 1])
        s_eta = eta * sigma[i + 1] * c.sqrt()
        s_dir = sigma[i + 1] * torch.sqrt(1.0 - eta * eta * c)  # sqrt(sigma_s^2 - s_eta^2)
        noise = randn_per_sample(x.shape, generator, device=x.device, dtype=x.dtype)
        return alpha[i + 1] * x0_hat + s_dir * eps_hat + s_eta * noise

    return _walk(denoiser, x_T, timesteps, cond, callback, update)


def dpm_solver_pp_2m(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    timesteps: torch.Tensor,
    *,
    schedule: Schedule,
    generator: GeneratorArg = None,
    callback: Callback | None = None,
    cond: Any = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): multistep, 2nd order,
    data-prediction form of the probability-flow ODE in half-log-SNR time lambda/2.

    With l = lambda / 2 and h_i = l_s - l_t:
        x_s = (sigma_s / sigma_t) x_t - alpha_s (e^{-h_i} - 1) D_i,
        D_i = (1 + 1/(2 r_i)) x0_hat_i - 1/(2 r_i) x0_hat_{i-1},  r_i = h_{i-1} / h_i;
    the first step uses D_0 = x0_hat_0 (1st order) and the last step returns x0_hat (the
    1st-order step to sigma = 0). Deterministic: ``generator`` is accepted for a uniform
    signature and never drawn from.
    """
    _, timesteps = _check_inputs(x_T, timesteps, generator, callback)
    logsnr = schedule(timesteps)  # [N + 1]
    alpha, sigma = alpha_sigma(logsnr)  # [N + 1] each
    half_logsnr = 0.5 * logsnr  # lambda in Lu et al.'s notation
    history: list[torch.Tensor] = []  # the previous step's x0_hat (local to this call)

    def update(i: int, x: torch.Tensor, x0_hat: torch.Tensor, extra: Any) -> torch.Tensor:
        h = half_logsnr[i + 1] - half_logsnr[i]
        if not history:
            d = x0_hat
        else:
            half_inv_r = 0.5 * h / (half_logsnr[i] - half_logsnr[i - 1])  # 1 / (2 r_i)
            d = (1.0 + half_inv_r) * x0_hat - half_inv_r * history[-1]
        history[:] = [x0_hat]
        return (sigma[i + 1] / sigma[i]) * x - alpha[i + 1] * torch.expm1(-h) * d

    return _walk(denoiser, x_T, timesteps, cond, callback, update)


# -- 4. registry -------------------------------------------------------------------------------
SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ddpm": ddpm,
    "ddim": ddim,
    "dpmpp_2m": dpm_solver_pp_2m,
}
assert tuple(SAMPLERS) == SAMPLER_NAMES, "diffusion/names.py lists every sampler, in order"


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """The sampler function called ``name`` (a key of :data:`SAMPLERS`)."""
    if name not in SAMPLERS:
        raise InvalidArgumentError(
            "sampler", name, "one of " + ", ".join(repr(n) for n in SAMPLERS)
        )
    return SAMPLERS[name]


__all__ = [
    "SAMPLERS",
    "Callback",
    "GeneratorArg",
    "ddim",
    "ddpm",
    "dpm_solver_pp_2m",
    "get_sampler",
    "randn_per_sample",
]
