"""The files of a model directory and the configs they hold (schemas only; no I/O here).

A model directory is plain files anyone can read (no pickle anywhere)::

    cascade.json                    CascadeConfig: format name and version, text encoder,
                                    stage list with each stage's default SamplingConfig
    README.md                       the model card (openimagen.modelcard), generated
    evaluation.json                 recorded ShapeBench results (eval shapebench --record)
    <stage>/config.json             StageConfig: U-Net config + diffusion settings, or
                                    DiffusersStageConfig (a diffusers U-Net, DeepFloyd IF)
    <stage>/model.safetensors       (EMA) weights
    <stage>/training.json           the training run a stage was exported from
    <stage>/upstream/               an imported stage: the checkpoint's licence and card
    text_encoder/                   an imported cascade: the checkpoint's T5 and tokenizer

Versions: cascade.json version 1 holds openimagen's own stages; version 2 adds stages of
another backend (:class:`DiffusersStageConfig`, whose config.json has its own format name) and
``text_conditioning``. A cascade is written with the lowest version that holds it, so a
directory of openimagen's own stages stays readable by every release.

Reading and writing them is :mod:`openimagen.cascade.modeldir`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from openimagen.cascade.sampling import SamplingConfig
from openimagen.config import Config
from openimagen.diffusion import (
    BETA_SCHEDULES,
    RESIZE_MODES,
    SAMPLER_NAMES,
    TIMESTEP_SPACINGS,
    Schedule,
    discrete_index,
    discrete_schedule,
    discrete_timesteps,
    get_schedule,
    uniform_timesteps,
)
from openimagen.errors import ConfigError, ModelDirectoryError
from openimagen.models.diffusers_unet import DiffusersUNetConfig
from openimagen.models.unet import UNetConfig
from openimagen.text.encoder import TEXT_CONDITIONINGS

FORMAT_NAME = "openimagen-cascade"
FORMAT_VERSION = 1  # openimagen's own stages and cascades (unchanged since 0.1)
LATEST_FORMAT_VERSION = 2  # the newest cascade.json this release reads (module docstring)
STAGE_FORMAT_NAME = "openimagen-stage"
DIFFUSERS_STAGE_FORMAT_NAME = "openimagen-diffusers-stage"
UPSTREAM_DIR = "upstream"  # an imported stage's licence and model card, as the checkpoint has them
# TEXT_CONDITIONINGS (openimagen.text): how the prompt reaches the U-Nets; cascade.json v2
CASCADE_FILE = "cascade.json"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TRAINING_FILE = "training.json"
EVALUATION_FILE = "evaluation.json"
CARD_FILE = "README.md"


@dataclasses.dataclass(frozen=True)
class StageConfig(Config):
    """One stage's config.json: the network plus the diffusion it was trained with."""

    unet: UNetConfig
    # output resolution of this stage (the size it samples at)
    resolution: int
    # SR stages: resolution of the low-res input they were trained for; None for the base
    lowres_resolution: int | None = None
    # log-SNR schedule name (openimagen.diffusion.SCHEDULES)
    schedule: str = "cosine"
    format: str = STAGE_FORMAT_NAME
    version: int = FORMAT_VERSION

    def validate(self) -> None:
        if self.format != STAGE_FORMAT_NAME:
            raise ConfigError(f"format={self.format!r}: expected {STAGE_FORMAT_NAME!r}")
        get_schedule(self.schedule)  # raises a clear error for unknown names
        if self.resolution < 1:
            raise ConfigError(f"resolution={self.resolution}: expected a positive integer")
        sr = self.unet.super_resolution
        if sr and self.lowres_resolution is None:
            raise ConfigError("lowres_resolution is required for a super-resolution stage")
        if not sr and self.lowres_resolution is not None:
            raise ConfigError(
                f"lowres_resolution={self.lowres_resolution} given for a base stage "
                "(unet.super_resolution is false); remove it"
            )
        if sr and self.lowres_resolution >= self.resolution:
            raise ConfigError(
                f"lowres_resolution={self.lowres_resolution} must be smaller than "
                f"resolution={self.resolution}"
            )

    # -- how a stage of this config samples (the same methods on DiffusersStageConfig) --------
    # openimagen's own stages: continuous time, uniform grids, the network sees t itself.
    dynamic_threshold_max = None  # no upper bound on dynamic thresholding's s
    lowres_resize = "bicubic"  # diffusion/augmentation.py, RESIZE_MODES
    initial_noise_first = False  # the SR noise-augmentation draw comes before x_T's
    # classifier-free guidance on x0_hat (False) or on the network's raw prediction (True).
    # The two are the same function (x0 is affine in eps at fixed x_t); the order of float
    # operations differs, and at high noise 1 / alpha (~70 at IF's k = 990) times the
    # guidance weight magnifies float32 rounding, so a stage reproducing a reference
    # pipeline guides where that pipeline does.
    guide_prediction = False

    @property
    def learned_variance(self) -> bool:
        return False

    def noise_schedule(self) -> Schedule:
        """The log-SNR of the stage's diffusion (training and sampling)."""
        return get_schedule(self.schedule)

    def lowres_schedule(self) -> Schedule:
        """The log-SNR of the SR noise augmentation (the level a is a diffusion time)."""
        return get_schedule(self.schedule)

    def sampling_timesteps(self, sampler: str, steps: int) -> torch.Tensor:
        """The time grid [steps + 1] ``sampler`` walks."""
        return uniform_timesteps(steps)

    def network_time(self, t: torch.Tensor) -> torch.Tensor:
        """What the network is fed for time t (continuous: t itself)."""
        return t

    def network_noise_level(self, aug_level: torch.Tensor) -> torch.Tensor:
        """What the network is fed for the noise-augmentation level (a diffusion time)."""
        return aug_level

    def noise_levels(self, level: float, batch: int, device: torch.device) -> torch.Tensor:
        """The sampling-time noise-augmentation level of every sample: [B]."""
        return torch.full((batch,), level, device=device)

    def training_time(self, u: torch.Tensor, *, aug: bool = False) -> torch.Tensor:
        """The diffusion time of a training sample drawn from u ~ U[0, 1) (or, ``aug``, of an
        SR stage's aug level): continuous time, t = u."""
        return u


def _default_spacing() -> dict[str, str]:
    # diffusers' defaults when the checkpoint's scheduler config names none: DDPMScheduler and
    # DDIMScheduler "leading", DPMSolverMultistepScheduler "linspace"
    return {"ddpm": "leading", "ddim": "leading", "dpmpp_2m": "linspace"}


@dataclasses.dataclass(frozen=True)
class DiffusersStageConfig(Config):
    """config.json of a stage whose network is diffusers' UNet2DConditionModel (DeepFloyd IF).

    Its diffusion is discrete-time as the checkpoint's scheduler config says (IF: 1000 steps
    of "squaredcos_cap_v2", epsilon prediction, learned-range variance); continuous time maps
    onto it by t = (k + 1) / N (:mod:`openimagen.diffusion.schedule`).
    """

    unet: DiffusersUNetConfig
    # output resolution (the size it samples at)
    resolution: int
    # SR stages: resolution of the low-res input; None for the base
    lowres_resolution: int | None = None
    # the scheduler's beta schedule and number of training timesteps N
    beta_schedule: str = "squaredcos_cap_v2"
    num_train_timesteps: int = 1000
    # the timestep grid of each sampler: diffusers' timestep_spacing of the scheduler that
    # sampler stands for (ddpm, ddim: DDPM/DDIMScheduler; dpmpp_2m: DPMSolverMultistepScheduler)
    timestep_spacing: dict[str, str] = dataclasses.field(default_factory=_default_spacing)
    steps_offset: int = 0
    # dynamic thresholding's upper bound on s (diffusers' sample_max_value; IF: 1.5 stage I,
    # 1.0 stage II); None = unbounded
    dynamic_threshold_max: float | None = None
    # SR stages: the image-noising schedule of the low-res input (IF-II: its
    # image_noising_scheduler) and how the low-res image is upsampled
    noise_level_schedule: str = "squaredcos_cap_v2"
    noise_level_timesteps: int = 1000
    lowres_resize: str = "bilinear-aligned"
    # where the stage came from (e.g. the checkpoint's pipeline class and directory name)
    source: str = ""
    format: str = DIFFUSERS_STAGE_FORMAT_NAME
    version: int = 1

    initial_noise_first = True  # IF's pipelines draw x_T before the low-res noise
    guide_prediction = True  # IF's pipelines guide eps (StageConfig.guide_prediction)

    def validate(self) -> None:
        if self.format != DIFFUSERS_STAGE_FORMAT_NAME:
            raise ConfigError(
                f"format={self.format!r}: expected {DIFFUSERS_STAGE_FORMAT_NAME!r}"
            )
        if self.version > 1:
            raise ConfigError(
                f"version={self.version}: written by a newer openimagen (this one reads version "
                "1 of this stage format); upgrade openimagen"
            )
        for name in ("beta_schedule", "noise_level_schedule"):
            if getattr(self, name) not in BETA_SCHEDULES:
                raise ConfigError(
                    f"{name}={getattr(self, name)!r}: expected one of {', '.join(BETA_SCHEDULES)}"
                )
        for name in ("num_train_timesteps", "noise_level_timesteps"):
            if getattr(self, name) < 2:
                raise ConfigError(f"{name}={getattr(self, name)}: expected an integer >= 2")
        for sampler, spacing in self.timestep_spacing.items():
            if sampler not in SAMPLER_NAMES or spacing not in TIMESTEP_SPACINGS:
                raise ConfigError(
                    f"timestep_spacing.{sampler}={spacing!r}: expected a sampler of "
                    f"{', '.join(SAMPLER_NAMES)} mapped to one of {', '.join(TIMESTEP_SPACINGS)}"
                )
        if self.lowres_resize not in RESIZE_MODES:
            raise ConfigError(
                f"lowres_resize={self.lowres_resize!r}: expected one of {', '.join(RESIZE_MODES)}"
            )
        if self.dynamic_threshold_max is not None and not self.dynamic_threshold_max >= 1.0:
            raise ConfigError(
                f"dynamic_threshold_max={self.dynamic_threshold_max}: expected None or >= 1"
            )
        if self.resolution < 1:
            raise ConfigError(f"resolution={self.resolution}: expected a positive integer")
        sr = self.unet.super_resolution
        if sr != (self.lowres_resolution is not None):
            raise ConfigError(
                "lowres_resolution is required for a super-resolution stage (and only there): "
                f"got {self.lowres_resolution!r} for a {'super-resolution' if sr else 'base'} U-Net"
            )
        if sr and self.lowres_resolution >= self.resolution:
            raise ConfigError(
                f"lowres_resolution={self.lowres_resolution} must be smaller than "
                f"resolution={self.resolution}"
            )

    @property
    def learned_variance(self) -> bool:
        return self.unet.learned_variance

    def noise_schedule(self) -> Schedule:
        return discrete_schedule(self.beta_schedule, self.num_train_timesteps)

    def lowres_schedule(self) -> Schedule:
        return discrete_schedule(self.noise_level_schedule, self.noise_level_timesteps)

    def sampling_timesteps(self, sampler: str, steps: int) -> torch.Tensor:
        spacing = self.timestep_spacing.get(sampler, _default_spacing()[sampler])
        return discrete_timesteps(
            steps,
            num_train_timesteps=self.num_train_timesteps,
            spacing=spacing,
            kind="dpmsolver" if sampler == "dpmpp_2m" else "ddpm",
            steps_offset=self.steps_offset,
        )

    def network_time(self, t: torch.Tensor) -> torch.Tensor:
        return discrete_index(t, self.num_train_timesteps)

    def noise_levels(self, level: float, batch: int, device: torch.device) -> torch.Tensor:
        # float64, so IF's level 250 (t = 0.251) is exactly a grid point of the schedule
        return torch.full((batch,), level, device=device, dtype=torch.float64)

    def network_noise_level(self, aug_level: torch.Tensor) -> torch.Tensor:
        # IF's noise level n is the image-noising timestep: aug time t = (n + 1) / N
        level = discrete_index(aug_level.double(), self.noise_level_timesteps)
        return level.clamp(0, self.noise_level_timesteps - 1)

    def training_time(self, u: torch.Tensor, *, aug: bool = False) -> torch.Tensor:
        # a timestep k uniform in 0 .. N - 1, as IF was trained, at t = (k + 1) / N (float64,
        # so discrete_index gives back k exactly); aug levels on the noising schedule's grid
        n = self.noise_level_timesteps if aug else self.num_train_timesteps
        return ((u.double() * n).floor().clamp(max=n - 1) + 1.0) / n


#: A stage's config.json: openimagen's own stage or one that runs a diffusers U-Net.
AnyStageConfig = StageConfig | DiffusersStageConfig


def parse_stage_config(data: Any, *, where: str = "config.json") -> AnyStageConfig:
    """A stage's config.json as a :class:`StageConfig`, or a :class:`DiffusersStageConfig`
    when its ``format`` says so (ConfigError naming ``where`` otherwise)."""
    kind = data.get("format") if isinstance(data, dict) else None
    cls = DiffusersStageConfig if kind == DIFFUSERS_STAGE_FORMAT_NAME else StageConfig
    return cls.from_dict(data, where=where)


@dataclasses.dataclass(frozen=True)
class StageEntry(Config):
    """A stage as listed in cascade.json."""

    path: str  # sub-directory holding config.json + model.safetensors
    sampling: SamplingConfig = SamplingConfig()


@dataclasses.dataclass(frozen=True)
class CascadeConfig(Config):
    """cascade.json."""

    text_encoder: str
    stages: tuple[StageEntry, ...]
    text_max_length: int = 64
    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION
    # free-form id written into image provenance (defaults to the directory name)
    model_id: str = ""
    # version 2: how the prompt reaches the U-Nets (TEXT_CONDITIONINGS); written only when not
    # "masked", so a version-1 cascade.json is unchanged
    text_conditioning: Literal[TEXT_CONDITIONINGS] = "masked"  # type: ignore[valid-type]

    def validate(self) -> None:
        if self.format != FORMAT_NAME:
            raise ConfigError(f"format={self.format!r}: this is not an openimagen model directory")
        if self.version > LATEST_FORMAT_VERSION:
            raise ConfigError(
                f"version={self.version}: written by a newer openimagen (this one reads up to "
                f"{LATEST_FORMAT_VERSION}); upgrade openimagen"
            )
        if self.text_conditioning != "masked" and self.version < 2:
            raise ConfigError(
                f"text_conditioning={self.text_conditioning!r} needs version 2 (got "
                f"{self.version})"
            )
        if not self.stages:
            raise ConfigError("stages: a cascade needs at least one stage")
        paths = [s.path for s in self.stages]
        if len(set(paths)) != len(paths):
            raise ConfigError(f"stages: duplicate stage paths {paths}")
        for p in paths:
            if Path(p).is_absolute() or ".." in Path(p).parts or not p:
                raise ConfigError(f"stages.path={p!r}: expected a plain sub-directory name")
        if self.text_max_length < 1:
            raise ConfigError(f"text_max_length={self.text_max_length}: expected >= 1")

    def to_dict(self) -> dict:
        data = super().to_dict()
        if self.text_conditioning == "masked":
            del data["text_conditioning"]  # version 1 has no such key
        return data


def cascade_version(configs: Sequence[AnyStageConfig], text_conditioning: str) -> int:
    """The lowest cascade.json version that holds these stages and text conditioning."""
    other = any(isinstance(c, DiffusersStageConfig) for c in configs)
    return 2 if other or text_conditioning != "masked" else FORMAT_VERSION


def check_stages(
    configs: Sequence[AnyStageConfig], *, text_dim: int, where: str = "cascade"
) -> None:
    """Cross-stage checks: base first, SR after, each SR input = previous output size."""
    if not configs:
        raise ModelDirectoryError(f"{where}: a cascade needs at least one stage")
    for i, cfg in enumerate(configs):
        if (i == 0) == cfg.unet.super_resolution:
            kind = "a base" if i == 0 else "a super-resolution"
            raise ModelDirectoryError(f"{where}: stage {i} must be {kind} stage")
        if i > 0 and cfg.lowres_resolution != configs[i - 1].resolution:
            raise ModelDirectoryError(
                f"{where}: stage {i} expects {cfg.lowres_resolution}x{cfg.lowres_resolution} input "
                f"but stage {i - 1} makes {configs[i - 1].resolution}x{configs[i - 1].resolution}"
            )
        if cfg.unet.text_embed_dim != text_dim:
            raise ModelDirectoryError(
                f"{where}: stage {i} was built for text embeddings of width "
                f"{cfg.unet.text_embed_dim}, but the text encoder gives {text_dim}"
            )


def stage_dir_name(index: int, config: AnyStageConfig) -> str:
    """The sub-directory of stage ``index``: ``stage0_base32``, ``stage1_sr128``, ..."""
    kind = "sr" if config.unet.super_resolution else "base"
    return f"stage{index}_{kind}{config.resolution}"


__all__ = [
    "CARD_FILE",
    "CASCADE_FILE",
    "CONFIG_FILE",
    "DIFFUSERS_STAGE_FORMAT_NAME",
    "EVALUATION_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LATEST_FORMAT_VERSION",
    "STAGE_FORMAT_NAME",
    "TEXT_CONDITIONINGS",
    "TRAINING_FILE",
    "UPSTREAM_DIR",
    "WEIGHTS_FILE",
    "AnyStageConfig",
    "CascadeConfig",
    "DiffusersStageConfig",
    "StageConfig",
    "StageEntry",
    "cascade_version",
    "check_stages",
    "parse_stage_config",
    "stage_dir_name",
]
