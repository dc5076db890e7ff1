"""Continuous-time Gaussian diffusion: schedules, objectives, guidance, thresholding, samplers.

- :mod:`.schedule`: log-SNR schedules of t in [0, 1] and timestep grids;
- :mod:`.objectives`: q(x_t | x_0), eps / v / x0 conversions and the training loss;
- :mod:`.guidance`: the denoiser interface ``(x_t, t, cond) -> x0_hat``, classifier-free
  guidance and static / dynamic thresholding as denoiser wrappers;
- :mod:`.samplers`: DDPM, DDIM and DPM-Solver++(2M) as pure functions over a denoiser;
- :mod:`.augmentation`: noise conditioning augmentation of a super-resolution stage's
  low-res input (shared by sampling and training);
- :mod:`.names`: the sampler and thresholding names, without torch.

The names below are imported on first use (:mod:`openimagen.lazy`), so reading
:mod:`.names` does not load torch.
"""

from typing import TYPE_CHECKING

from openimagen.lazy import lazy_exports

if TYPE_CHECKING:
    from openimagen.diffusion.augmentation import RESIZE_MODES, prepare_lowres
    from openimagen.diffusion.guidance import (
        Denoiser,
        ModelFn,
        apply_threshold,
        classifier_free_guidance,
        concat_cond,
        dynamic_threshold,
        dynamic_threshold_x0,
        model_to_denoiser,
        split_extra,
        static_threshold,
        static_threshold_x0,
    )
    from openimagen.diffusion.names import SAMPLER_NAMES, THRESHOLDS
    from openimagen.diffusion.objectives import (
        PREDICTIONS,
        Prediction,
        check_prediction,
        diffusion_loss,
        eps_from_x0,
        min_snr_weight,
        prediction_to_x0,
        q_sample,
        v_from_x0_eps,
        x0_from_eps,
        x0_from_v,
    )
    from openimagen.diffusion.samplers import (
        SAMPLERS,
        Callback,
        GeneratorArg,
        ddim,
        ddpm,
        dpm_solver_pp_2m,
        get_sampler,
        randn_per_sample,
    )
    from openimagen.diffusion.schedule import (
        BETA_SCHEDULES,
        GRID_KINDS,
        SCHEDULES,
        TIMESTEP_SPACINGS,
        Schedule,
        alpha_sigma,
        discrete_alphas_cumprod,
        discrete_index,
        discrete_schedule,
        discrete_timesteps,
        get_schedule,
        logsnr_cosine,
        logsnr_linear,
        uniform_timesteps,
    )

__all__ = [
    "BETA_SCHEDULES",
    "GRID_KINDS",
    "PREDICTIONS",
    "RESIZE_MODES",
    "SAMPLERS",
    "SAMPLER_NAMES",
    "SCHEDULES",
    "THRESHOLDS",
    "TIMESTEP_SPACINGS",
    "Callback",
    "Denoiser",
    "GeneratorArg",
    "ModelFn",
    "Prediction",
    "Schedule",
    "alpha_sigma",
    "apply_threshold",
    "check_prediction",
    "classifier_free_guidance",
    "concat_cond",
    "ddim",
    "ddpm",
    "diffusion_loss",
    "discrete_alphas_cumprod",
    "discrete_index",
    "discrete_schedule",
    "discrete_timesteps",
    "dpm_solver_pp_2m",
    "dynamic_threshold",
    "dynamic_threshold_x0",
    "eps_from_x0",
    "get_sampler",
    "get_schedule",
    "logsnr_cosine",
    "logsnr_linear",
    "min_snr_weight",
    "model_to_denoiser",
    "prediction_to_x0",
    "prepare_lowres",
    "q_sample",
    "randn_per_sample",
    "split_extra",
    "static_threshold",
    "static_threshold_x0",
    "uniform_timesteps",
    "v_from_x0_eps",
    "x0_from_eps",
    "x0_from_v",
]

__getattr__ = lazy_exports(
    __name__, ["names", "schedule", "objectives", "guidance", "samplers", "augmentation"]
)
