"""Noise schedules for variance-preserving diffusion, as log-SNR functions of continuous time.

Time ``t`` runs over [0, 1]: t = 0 is clean data, t = 1 is (almost) pure noise. A schedule
maps t to lambda(t) = log(alpha_t^2 / sigma_t^2), the log signal-to-noise ratio, which is
monotone decreasing in t (Kingma et al. 2021, "Variational Diffusion Models", sec. 2). With
alpha_t^2 + sigma_t^2 = 1 (variance preserving) the schedule determines alpha_t and sigma_t:
alpha_t^2 = sigmoid(lambda), sigma_t^2 = sigmoid(-lambda).

Timestep grids (which t a sampler visits) are separate functions, so any grid works with any
schedule.

Discrete-time models (DDPM, DeepFloyd IF: 1000 integer timesteps k = 0 .. N-1, the noise after
k + 1 steps of a beta schedule) map onto continuous time by t = (k + 1) / N: t = 1 is the last
timestep k = N - 1 and t = 0 is clean data (diffusers' ``alphas_cumprod[k]`` is the signal
level after k + 1 steps). :func:`discrete_schedule` is such a model's log-SNR as a function of
t, exact at every t_k and linear in between; :func:`discrete_timesteps` is the grid a diffusers
scheduler visits, in this time.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from openimagen.errors import InvalidArgumentError, InvalidTypeError

Schedule = Callable[[torch.Tensor], torch.Tensor]

SCHEDULES: tuple[str, ...] = ("cosine", "linear")
#: The beta schedules of discrete-time models (diffusers' names) and the timestep spacings of
#: their samplers (diffusers' ``timestep_spacing``; Lin et al. 2024, "Common Diffusion Noise
#: Schedules and Sample Steps are Flawed", table 2).
BETA_SCHEDULES: tuple[str, ...] = ("squaredcos_cap_v2", "linear")
TIMESTEP_SPACINGS: tuple[str, ...] = ("leading", "linspace", "trailing")
#: How a diffusers scheduler places its steps: "ddpm" (DDPM, DDIM: every step visits a
#: timestep, the last one ends on clean data) or "dpmsolver" (DPM-Solver: N + 1 points, the
#: last one sigma = 0).
GRID_KINDS: tuple[str, ...] = ("ddpm", "dpmsolver")


def logsnr_cosine(
    t: torch.Tensor, logsnr_min: float = -20.0, logsnr_max: float = 20.0
) -> torch.Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021) in log-SNR form: lambda = -2 log tan(pi t / 2).

    alpha_t = cos(pi t / 2) gives exactly this lambda. The endpoints (lambda = +-inf) are kept
    finite by mapping t in [0, 1] linearly onto the angles whose lambda is ``logsnr_max`` and
    ``logsnr_min`` (Hoogeboom et al. 2023, "simple diffusion", sec. 2), so lambda(0) =
    ``logsnr_max`` and lambda(1) = ``logsnr_min``.
    """
    if not logsnr_min < logsnr_max:
        raise InvalidArgumentError(
            "logsnr_min", logsnr_min, f"a value below logsnr_max={logsnr_max}"
        )
    # angle phi with -2 log tan(phi) = lambda  <=>  phi = atan(exp(-lambda / 2))
    phi_start = math.atan(math.exp(-0.5 * logsnr_max))  # angle at t = 0
    phi_end = math.atan(math.exp(-0.5 * logsnr_min))  # angle at t = 1
    t = _as_float_tensor(t)
    return -2.0 * torch.log(torch.tan(phi_start + t * (phi_end - phi_start)))


def logsnr_linear(t: torch.Tensor) -> torch.Tensor:
    """Continuous form of DDPM's linear betas (1e-4 to 0.02 over 1000 steps; Ho et al. 2020).

    lambda(t) = -log(expm1(1e-4 + 10 t^2)) (Kingma et al. 2021, VDM, appendix on schedules):
    lambda(0) is about 9.2 and lambda(1) about -10.
    """
    t = _as_float_tensor(t)
    return -torch.log(torch.expm1(1e-4 + 10.0 * t * t))


_SCHEDULE_FUNCTIONS: dict[str, Schedule] = {"cosine": logsnr_cosine, "linear": logsnr_linear}


def get_schedule(name: str) -> Schedule:
    """The log-SNR function called ``name`` (one of :data:`SCHEDULES`)."""
    if name not in _SCHEDULE_FUNCTIONS:
        raise InvalidArgumentError(
            "schedule", name, "one of " + ", ".join(repr(n) for n in SCHEDULES)
        )
    return _SCHEDULE_FUNCTIONS[name]


def alpha_sigma(logsnr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha, sigma) with alpha^2 = sigmoid(logsnr), sigma^2 = sigmoid(-logsnr).

    ``torch.sigmoid`` is stable for large |logsnr|, and computing each from its own sigmoid
    (not sigma = sqrt(1 - alpha^2)) keeps full relative precision at both ends.
    """
    logsnr = _as_float_tensor(logsnr)
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()


def uniform_timesteps(steps: int, t_max: float = 1.0, t_min: float = 0.0) -> torch.Tensor:
    """``steps + 1`` evenly spaced times from ``t_max`` down to ``t_min``: a [steps + 1] grid."""
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise InvalidTypeError("steps", steps, "an int >= 1")
    if steps < 1:
        raise InvalidArgumentError("steps", steps, "an int >= 1 (the number of sampling steps)")
    if not 0.0 <= t_min < t_max <= 1.0:
        raise InvalidArgumentError("(t_min, t_max)", (t_min, t_max), "0 <= t_min < t_max <= 1")
    return torch.linspace(t_max, t_min, steps + 1)  # [steps + 1], decreasing


# -- discrete-time schedules (DDPM, DeepFloyd IF) -------------------------------------------------
def discrete_alphas_cumprod(beta_schedule: str, num_train_timesteps: int) -> torch.Tensor:
    """alpha_bar_k, k = 0 .. N-1, of a discrete beta schedule: [N] float32, as diffusers makes it.

    "squaredcos_cap_v2": Nichol & Dhariwal 2021, "Improved DDPM", eq. 17, betas capped at
    0.999 (diffusers' ``betas_for_alpha_bar``); "linear": Ho et al. 2020, betas from 1e-4 to
    0.02. The betas are float32 and their cumulative product is taken in float32, exactly as
    diffusers' DDPMScheduler does, so a model trained on it sees the same noise levels.
    """
    if beta_schedule not in BETA_SCHEDULES:
        raise InvalidArgumentError(
            "beta_schedule", beta_schedule, "one of " + ", ".join(repr(n) for n in BETA_SCHEDULES)
        )
    if isinstance(num_train_timesteps, bool) or not isinstance(num_train_timesteps, int) or (
        num_train_timesteps < 2
    ):
        raise InvalidArgumentError("num_train_timesteps", num_train_timesteps, "an integer >= 2")
    n = num_train_timesteps
    if beta_schedule == "squaredcos_cap_v2":

        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = torch.tensor(
            [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)],
            dtype=torch.float32,
            device="cpu",  # a table, even when modules are being built on the meta device
        )  # [N]
    else:
        betas = torch.linspace(1e-4, 0.02, n, dtype=torch.float32, device="cpu")  # [N]
    return torch.cumprod(1.0 - betas, dim=0)  # [N], float32


def discrete_schedule(beta_schedule: str, num_train_timesteps: int) -> Schedule:
    """The log-SNR of a discrete-time model as a function of t in [0, 1] (module docstring).

    lambda(t_k) = log(alpha_bar_k / (1 - alpha_bar_k)) at t_k = (k + 1) / N, computed in float64
    from the float32 alpha_bar; linear in t between the t_k, extended linearly below t_0 =
    1 / N (so lambda stays finite and decreasing down to t = 0, which samplers never evaluate).
    """
    alphas_cumprod = discrete_alphas_cumprod(beta_schedule, num_train_timesteps).double()
    table = torch.log(alphas_cumprod) - torch.log1p(-alphas_cumprod)  # [N] float64
    n = num_train_timesteps

    def logsnr_discrete(t: torch.Tensor) -> torch.Tensor:
        t = _as_float_tensor(t)
        index = discrete_index(t.double(), n)  # [...] in [-1, N - 1]
        low = index.floor().clamp(0, n - 2).long()
        frac = index - low  # below t_0 this is negative: linear extension
        values = table.to(t.device)
        out = values[low] + frac * (values[low + 1] - values[low])
        return out if t.dtype == torch.float64 else out.to(t.dtype)

    return logsnr_discrete


def discrete_index(t: torch.Tensor, num_train_timesteps: int) -> torch.Tensor:
    """The timestep k = t N - 1 a discrete-time network is fed for time t (module docstring).

    Values within 1e-6 of an integer are snapped to it, so a grid point computed in floating
    point feeds the network exactly the integer timestep it was trained on.
    """
    index = t * num_train_timesteps - 1.0
    nearest = index.round()
    return torch.where((index - nearest).abs() < 1e-6, nearest, index)


def discrete_timesteps(
    steps: int,
    *,
    num_train_timesteps: int,
    spacing: str = "leading",
    kind: str = "ddpm",
    steps_offset: int = 0,
) -> torch.Tensor:
    """The grid of a diffusers scheduler, in continuous time: [steps + 1] float64, decreasing.

    ``kind`` "ddpm" (DDPMScheduler, DDIMScheduler) visits ``steps`` integer timesteps placed
    by ``spacing``; "dpmsolver" (DPMSolverMultistepScheduler) places ``steps + 1`` points and
    drops the last. Each timestep k becomes t = (k + 1) / N and the grid ends at t = 0 (clean):
    a sampler's last step returns its x0_hat there, as these schedulers do when their next
    timestep is before k = 0 (or their last sigma is zero).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidArgumentError("steps", steps, "an int >= 1 (the number of sampling steps)")
    if spacing not in TIMESTEP_SPACINGS:
        raise InvalidArgumentError(
            "timestep_spacing", spacing, "one of " + ", ".join(repr(s) for s in TIMESTEP_SPACINGS)
        )
    if kind not in GRID_KINDS:
        raise InvalidArgumentError("kind", kind, "one of " + ", ".join(repr(k) for k in GRID_KINDS))
    import numpy as np

    n = num_train_timesteps
    if kind == "ddpm":  # diffusers DDPMScheduler.set_timesteps
        if spacing == "linspace":
            ks = np.linspace(0, n - 1, steps).round()[::-1]
        elif spacing == "leading":
            ks = (np.arange(0, steps) * (n // steps)).round()[::-1] + steps_offset
        else:
            ks = np.round(np.arange(n, 0, -n / steps)) - 1
    else:  # diffusers DPMSolverMultistepScheduler.set_timesteps
        if spacing == "linspace":
            ks = np.linspace(0, n - 1, steps + 1).round()[::-1][:-1]
        elif spacing == "leading":
            ks = (np.arange(0, steps + 1) * (n // (steps + 1))).round()[::-1][:-1] + steps_offset
        else:
            ks = np.arange(n, 0, -n / steps).round() - 1
    ks = ks.astype(np.int64)
    if len(ks) != steps or not bool((np.diff(ks) < 0).all()) or ks.min() < 0 or ks.max() >= n:
        raise InvalidArgumentError(
            "steps", steps, f"at most {n} distinct timesteps (spacing {spacing!r} gave {ks.tolist()})"
        )
    t = (torch.from_numpy(ks.copy()).double() + 1.0) / n  # [steps]
    return torch.cat([t, torch.zeros(1, dtype=torch.float64)])  # [steps + 1]


def _as_float_tensor(t: torch.Tensor | float) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        return torch.as_tensor(t, dtype=torch.get_default_dtype())
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


__all__ = [
    "BETA_SCHEDULES",
    "GRID_KINDS",
    "SCHEDULES",
    "TIMESTEP_SPACINGS",
    "Schedule",
    "alpha_sigma",
    "discrete_alphas_cumprod",
    "discrete_index",
    "discrete_schedule",
    "discrete_timesteps",
    "get_schedule",
    "logsnr_cosine",
    "logsnr_linear",
    "uniform_timesteps",
]
