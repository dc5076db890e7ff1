"""Noise schedules for variance-preserving diffusion, as log-SNR functions of continuous time.

Time ``t`` runs over [0, 1]: t = 0 is clean data, t = 1 is (almost) pure noise. A schedule
maps t to lambda(t) = log(alpha_t^2 / sigma_t^2), the log signal-to-noise ratio, which is
monotone decreasing in t (Kingma et al. 2021, "Variational Diffusion Models", sec. 2). With
alpha_t^2 + sigma_t^2 = 1 (variance preserving) the schedule determines alpha_t and sigma_t:
alpha_t^2 = sigmoid(lambda), sigma_t^2 = sigmoid(-lambda).

Timestep grids (which t a sampler visits) are separate functions, so any grid works with any
schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from openimagen.errors import InvalidArgumentError, InvalidTypeError

Schedule = Callable[[torch.Tensor], torch.Tensor]

SCHEDULES: tuple[str, ...] = ("cosine", "linear")


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


def _as_float_tensor(t: torch.Tensor | float) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        return torch.as_tensor(t, dtype=torch.get_default_dtype())
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


__all__ = [
    "SCHEDULES",
    "Schedule",
    "alpha_sigma",
    "get_schedule",
    "logsnr_cosine",
    "logsnr_linear",
    "uniform_timesteps",
]
