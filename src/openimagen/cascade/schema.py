"""The files of a model directory and the configs they hold (schemas only; no I/O here).

A model directory is plain files anyone can read (no pickle anywhere)::

    cascade.json                    CascadeConfig: format name and version, text encoder,
                                    stage list with each stage's default SamplingConfig
    README.md                       the model card (openimagen.modelcard), generated
    evaluation.json                 recorded ShapeBench results (eval shapebench --record)
    <stage>/config.json             StageConfig: U-Net config + diffusion settings
    <stage>/model.safetensors       (EMA) weights
    <stage>/training.json           the training run a stage was exported from

Reading and writing them is :mod:`openimagen.cascade.modeldir`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from openimagen.cascade.sampling import SamplingConfig
from openimagen.config import Config
from openimagen.diffusion import get_schedule
from openimagen.errors import ConfigError, ModelDirectoryError
from openimagen.models.unet import UNetConfig

FORMAT_NAME = "openimagen-cascade"
FORMAT_VERSION = 1
STAGE_FORMAT_NAME = "openimagen-stage"
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

    def validate(self) -> None:
        if self.format != FORMAT_NAME:
            raise ConfigError(f"format={self.format!r}: this is not an openimagen model directory")
        if self.version > FORMAT_VERSION:
            raise ConfigError(
                f"version={self.version}: written by a newer openimagen (this one reads up to "
                f"{FORMAT_VERSION}); upgrade openimagen"
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


def check_stages(configs: Sequence[StageConfig], *, text_dim: int, where: str = "cascade") -> None:
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


def stage_dir_name(index: int, config: StageConfig) -> str:
    """The sub-directory of stage ``index``: ``stage0_base32``, ``stage1_sr128``, ..."""
    kind = "sr" if config.unet.super_resolution else "base"
    return f"stage{index}_{kind}{config.resolution}"


__all__ = [
    "CARD_FILE",
    "CASCADE_FILE",
    "CONFIG_FILE",
    "EVALUATION_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "STAGE_FORMAT_NAME",
    "TRAINING_FILE",
    "WEIGHTS_FILE",
    "CascadeConfig",
    "StageConfig",
    "StageEntry",
    "check_stages",
    "stage_dir_name",
]
