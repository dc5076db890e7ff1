"""The training config: one TOML file per trainable stage.

Sections (every key optional except ``[stage]``'s ``preset`` and ``resolution``)::

    [stage]   which U-Net (a preset plus overrides), its resolution and diffusion schedule
    [text]    frozen text encoder and optional on-disk embedding cache
    [data]    where the captioned images come from (shapes | folder | jsonl | webdataset)
    [optim]   AdamW or Adafactor, learning rate, warmup, gradient clipping
    [train]   steps, global batch size, accumulation, precision, CFG dropout, noise aug, EMA,
              checkpointing, activation checkpointing, FSDP sharding
    [log]     metrics, progress bar, TensorBoard, sample grids

Unknown keys, wrong types and inconsistent values fail in ``from_toml_file`` with a
:class:`~openimagen.errors.ConfigError` naming the key path, before any training starts.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal

from openimagen.config import Config
from openimagen.errors import ConfigError

DataSourceName = Literal["shapes", "folder", "jsonl", "webdataset"]
OptimizerName = Literal["adamw", "adafactor"]
Precision = Literal["no", "bf16", "fp16"]

DEFAULT_SAMPLE_PROMPTS = (
    "a red circle",
    "a blue square to the left of a yellow circle",
    "two green triangles",
    "a large purple square on a white background",
)


#: ``stage.preset`` that takes the stage (U-Net, schedule) from ``train.init_from`` as it is:
#: the way to fine-tune a stage whose network is not a preset's (an imported DeepFloyd IF stage)
INIT_FROM_PRESET = "init_from"


@dataclasses.dataclass(frozen=True)
class StageSection(Config):
    """The stage being trained: ``get_preset(preset, **unet)`` plus diffusion settings, or
    (``preset = "init_from"``) the stage of ``train.init_from`` as it is."""

    preset: str
    resolution: int
    # SR stages: the size of the low-res input (None for a base stage)
    lowres_resolution: int | None = None
    # overrides of the preset's UNetConfig fields, e.g. {base_channels = 32}
    unet: dict[str, Any] = dataclasses.field(default_factory=dict)
    schedule: str = "cosine"

    def validate(self) -> None:
        if self.resolution < 8:
            raise ConfigError(f"stage.resolution={self.resolution}: expected an integer >= 8")
        if self.lowres_resolution is not None and self.lowres_resolution < 4:
            raise ConfigError(
                f"stage.lowres_resolution={self.lowres_resolution}: expected an integer >= 4"
            )


@dataclasses.dataclass(frozen=True)
class TextSection(Config):
    """The frozen text encoder (``openimagen.text.load_text_encoder``) and its caches."""

    encoder: str = "minilm"
    max_length: int = 64
    # directory of a TextEmbeddingCache (filled by `openimagen encode-text`); "" = none
    cache_dir: str = ""
    # keep each caption's embedding in memory after its first encoding (captions repeat)
    memory_cache: bool = True
    # how the prompt reaches the U-Net (openimagen.text.TEXT_CONDITIONINGS): "masked", or
    # "deepfloyd-if" for an imported IF stage (the model directory's cascade.json says which)
    conditioning: Literal["masked", "deepfloyd-if"] = "masked"

    def validate(self) -> None:
        if self.max_length < 1:
            raise ConfigError(f"text.max_length={self.max_length}: expected >= 1")


@dataclasses.dataclass(frozen=True)
class DataSection(Config):
    """Captioned images; see :mod:`openimagen.data.sources`."""

    source: DataSourceName = "shapes"
    # folder: a directory; jsonl: a manifest file; webdataset: a .tar, a directory of .tar
    # files or a glob. Relative paths are resolved against the config file's directory.
    path: str = ""
    # shapes world: ShapesConfig overrides (e.g. {colors = ["red"]}) and its split
    shapes: dict[str, Any] = dataclasses.field(default_factory=dict)
    split: str = "train"
    # images are resized so their shorter side is `image_size` (0 = the stage resolution),
    # then cropped to the stage resolution: centred, or at random (large SR stages)
    image_size: int = 0
    random_crop: bool = False
    # shuffles finite sources per epoch; seeds the shapes world's scenes
    seed: int = 0
    # DataLoader worker processes that read and render ahead (0 = in the training process)
    num_workers: int = 0

    def validate(self) -> None:
        if self.source != "shapes" and not self.path:
            raise ConfigError(f"data.path: required for data.source={self.source!r}")
        if self.source == "shapes" and self.shapes.get("seed") is not None:
            raise ConfigError("data.shapes.seed: set data.seed instead")
        if self.image_size < 0 or self.num_workers < 0:
            raise ConfigError("data.image_size and data.num_workers must be >= 0")


@dataclasses.dataclass(frozen=True)
class OptimSection(Config):
    """Optimizer. Imagen trained its base model with Adafactor and SR stages with Adam."""

    name: OptimizerName = "adamw"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    eps: float = 1e-8
    # linear warmup from 0 to `lr` over this many steps (Imagen: 10k steps)
    warmup_steps: int = 0
    # linear decay to 0 over the last `decay_steps` of train.steps (0 = constant after
    # warm-up); set it when resuming a constant-rate run to cool it down
    decay_steps: int = 0
    # clip the global gradient norm to this value (0 = off); Imagen clips at 1.0
    grad_clip: float = 1.0

    def validate(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"optim.lr={self.lr}: expected a positive number")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"optim.betas={list(self.betas)}: each must be in [0, 1)")
        if min(self.warmup_steps, self.decay_steps, self.weight_decay, self.grad_clip) < 0:
            raise ConfigError(
                "optim.warmup_steps, decay_steps, weight_decay and grad_clip must be >= 0"
            )


@dataclasses.dataclass(frozen=True)
class TrainSection(Config):
    """The loop itself."""

    steps: int = 1000
    # global batch: images per optimizer step, summed over processes and accumulation
    batch_size: int = 32
    grad_accum: int = 1
    mixed_precision: Precision = "no"
    # "auto" (CUDA if present), "cpu", "cuda"; under a launcher each process takes its GPU
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    # classifier-free guidance: drop a caption with this probability (Imagen: 10%)
    text_dropout: float = 0.1
    # SR stages: aug level ~ U[0, max_aug_level] per sample (Imagen sec. 2.5)
    max_aug_level: float = 0.5
    min_snr_gamma: float | None = None
    ema_decay: float = 0.9999
    # EMA warmup: decay_n = min(ema_decay, (1 + n) / (ema_warmup + n)); 0 = no warmup
    ema_warmup: int = 10
    checkpoint_every: int = 1000
    keep_last: int = 3
    # start a fresh run from these weights: a stage directory of a model directory
    # (config.json + model.safetensors, e.g. a bundled stage), for fine-tuning; "" = random
    # init. Relative paths are taken from the config file's directory. Ignored on resume.
    init_from: str = ""
    # recompute each U-Net level's activations in backward instead of keeping them (less
    # memory, ~1 more forward pass per step); results are unchanged, and it is not part of
    # the stage's config, so a run may be resumed with it on or off
    activation_checkpointing: bool = False
    # shard the U-Net's weights, gradients, optimizer state and EMA over the processes of a
    # torchrun / accelerate launch (torch's FSDP2, train/sharding.py): each of P processes
    # keeps ~1/P of them. Same steps as DDP; checkpoints hold full tensors, so a run may be
    # resumed with it on or off, with any number of processes
    fsdp: bool = False

    def validate(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "checkpoint_every", "keep_last"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}={getattr(self, name)}: expected >= 1")
        if self.batch_size % self.grad_accum:
            raise ConfigError(
                f"train.batch_size={self.batch_size}: must be a multiple of "
                f"train.grad_accum={self.grad_accum}"
            )
        if not 0.0 <= self.text_dropout <= 1.0:
            raise ConfigError(f"train.text_dropout={self.text_dropout}: expected in [0, 1]")
        if not 0.0 <= self.max_aug_level <= 1.0:
            raise ConfigError(f"train.max_aug_level={self.max_aug_level}: expected in [0, 1]")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay={self.ema_decay}: expected in [0, 1)")
        if self.ema_warmup < 0:
            raise ConfigError(f"train.ema_warmup={self.ema_warmup}: expected >= 0")
        if self.min_snr_gamma is not None and not self.min_snr_gamma > 0:
            raise ConfigError(f"train.min_snr_gamma={self.min_snr_gamma}: expected > 0")
        if self.fsdp and self.mixed_precision == "fp16":
            raise ConfigError(
                'train.fsdp = true with train.mixed_precision = "fp16": fp16\'s gradient scaler '
                'is not wired for sharded gradients; use "bf16" (no scaler needed) or "no"'
            )


@dataclasses.dataclass(frozen=True)
class LogSection(Config):
    """What is written while training."""

    every: int = 10  # steps between metrics.jsonl lines (and TensorBoard points)
    progress: bool = True  # tqdm bar with loss and images/s
    tensorboard: bool = True  # used when the `tensorboard` package is installed
    sample_every: int = 0  # steps between sample grids (0 = never)
    sample_prompts: tuple[str, ...] = DEFAULT_SAMPLE_PROMPTS
    sample_seeds: tuple[int, ...] = (0, 1, 2, 3)
    sample_steps: int = 25
    sample_guidance: float = 3.0
    sample_aug_level: float = 0.0  # SR stages: noise-aug level at sampling

    def validate(self) -> None:
        if self.every < 1 or self.sample_every < 0 or self.sample_steps < 1:
            raise ConfigError("log.every and log.sample_steps must be >= 1, sample_every >= 0")
        if len(self.sample_prompts) != len(self.sample_seeds) or not self.sample_prompts:
            raise ConfigError(
                f"log.sample_seeds: {len(self.sample_seeds)} seeds for "
                f"{len(self.sample_prompts)} log.sample_prompts; give one seed per prompt"
            )


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """A whole training run of one stage."""

    stage: StageSection
    text: TextSection = TextSection()
    data: DataSection = DataSection()
    optim: OptimSection = OptimSection()
    train: TrainSection = TrainSection()
    log: LogSection = LogSection()
    # directory the relative data/cache paths are resolved against (set by load_config)
    base_dir: str = ""

    def validate(self) -> None:
        s = self.stage
        if self.optim.decay_steps > self.train.steps:
            raise ConfigError(
                f"optim.decay_steps={self.optim.decay_steps} is more than "
                f"train.steps={self.train.steps}; the decay covers the last steps of the run"
            )
        if self.train.fsdp and self.optim.name == "adafactor":
            raise ConfigError(
                'train.fsdp = true with optim.name = "adafactor": torch\'s Adafactor cannot '
                'update sharded (DTensor) parameters; use optim.name = "adamw", or train.fsdp = '
                "false"
            )
        if self.data.image_size and self.data.image_size < s.resolution:
            raise ConfigError(
                f"data.image_size={self.data.image_size} is smaller than "
                f"stage.resolution={s.resolution}; use 0 or a size >= the resolution"
            )
        if s.preset == INIT_FROM_PRESET and not self.train.init_from:
            raise ConfigError(
                f'stage.preset="{INIT_FROM_PRESET}" takes the stage from train.init_from, '
                "which is empty; set train.init_from to a stage directory of a model directory"
            )
        if s.lowres_resolution is not None and s.lowres_resolution >= s.resolution:
            raise ConfigError(
                f"stage.lowres_resolution={s.lowres_resolution} must be smaller than "
                f"stage.resolution={s.resolution}"
            )

    def resolve_path(self, path: str) -> Path:
        """``path`` as written in the config, relative paths taken from ``base_dir``."""
        p = Path(os.path.expanduser(path))
        return p if p.is_absolute() or not self.base_dir else Path(self.base_dir) / p


def load_config(source: str | os.PathLike | TrainConfig | dict) -> TrainConfig:
    """A validated :class:`TrainConfig` from a TOML path, a dict or a config."""
    if isinstance(source, TrainConfig):
        return source
    if isinstance(source, dict):
        return TrainConfig.from_dict(source, where="config")
    from openimagen.config import read_toml

    path = Path(source)
    data = read_toml(path)
    data.setdefault("base_dir", str(path.resolve().parent))
    return TrainConfig.from_dict(data, where=str(path))


__all__ = [
    "INIT_FROM_PRESET",
    "DataSection",
    "LogSection",
    "OptimSection",
    "StageSection",
    "TextSection",
    "TrainConfig",
    "TrainSection",
    "load_config",
]
