"""What a training run is built from: the stage config, the U-Net, EMA, optimizer, schedule.

:func:`build_parts` makes them in a fixed order from ``train.seed`` (so a run's initial
weights depend only on its config) and, when resuming, restores them from a checkpoint
(:mod:`openimagen.train.resume`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from openimagen.cascade import (
    AnyStageConfig,
    DiffusersStageConfig,
    Stage,
    StageConfig,
    load_stage_weights,
)
from openimagen.errors import ConfigError, OpenImagenError
from openimagen.train.config import INIT_FROM_PRESET, TrainConfig
from openimagen.train.ema import make_ema

logger = logging.getLogger(__name__)


def build_stage_config(config: TrainConfig) -> AnyStageConfig:
    """The stage's config.json: ``get_preset(stage.preset)`` plus ``stage.unet`` overrides, or
    (``stage.preset = "init_from"``) the config of the stage ``train.init_from`` names."""
    from openimagen.models import UNetConfig, get_preset

    s = config.stage
    if s.preset == INIT_FROM_PRESET:
        return _init_from_stage_config(config)
    try:
        preset = get_preset(s.preset)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"stage.preset={s.preset!r}: {exc}") from exc
    unet = UNetConfig.from_dict({**preset.to_dict(), **s.unet}, where="stage.unet")
    if unet.image_size != s.resolution:
        raise ConfigError(
            f"stage.resolution={s.resolution} does not match the U-Net's image_size="
            f"{unet.image_size} (preset {s.preset!r}); set stage.unet.image_size or "
            "stage.resolution so they agree"
        )
    if unet.super_resolution and s.lowres_resolution is None:
        raise ConfigError(
            f"stage.lowres_resolution: required for the super-resolution preset {s.preset!r}"
        )
    if not unet.super_resolution and s.lowres_resolution is not None:
        raise ConfigError(
            f"stage.lowres_resolution={s.lowres_resolution}: the preset {s.preset!r} is a base "
            "stage (no low-res input); remove the key"
        )
    try:
        return StageConfig(
            unet=unet,
            resolution=s.resolution,
            lowres_resolution=s.lowres_resolution,
            schedule=s.schedule,
        )
    except (ConfigError, ValueError) as exc:
        raise ConfigError(f"stage: {exc}") from exc


def _init_from_stage_config(config: TrainConfig) -> AnyStageConfig:
    """The stage config of ``train.init_from``; [stage]'s sizes must be that stage's."""
    from openimagen.cascade import CASCADE_FILE, read_cascade_config, read_stage_config

    stage_dir = config.resolve_path(config.train.init_from)
    where = f"train.init_from={str(stage_dir)!r}"
    try:
        saved = read_stage_config(stage_dir)
    except OpenImagenError as exc:
        raise ConfigError(f"{where}: not a stage directory of a model directory: {exc}") from exc
    s = config.stage
    if (s.resolution, s.lowres_resolution) != (saved.resolution, saved.lowres_resolution):
        raise ConfigError(
            f"stage.resolution={s.resolution}, stage.lowres_resolution={s.lowres_resolution}: "
            f"the stage of {where} is {saved.resolution} (low-res "
            f"{saved.lowres_resolution}); set [stage] to its sizes"
        )
    if s.unet:
        raise ConfigError(f'stage.unet: no overrides with stage.preset="{INIT_FROM_PRESET}"')
    if (stage_dir.parent / CASCADE_FILE).is_file():  # the stage's own model directory
        wanted = read_cascade_config(stage_dir.parent).text_conditioning
        if config.text.conditioning != wanted:
            raise ConfigError(
                f"text.conditioning={config.text.conditioning!r}: the model directory of "
                f"{where} conditions its stages as {wanted!r}; set text.conditioning = "
                f'"{wanted}"'
            )
    return saved


def make_optimizer(config: TrainConfig, params: Any) -> torch.optim.Optimizer:
    o = config.optim
    if o.name == "adamw":
        # fused: one kernel for the whole update, on CPU as on CUDA; measured 3x faster than
        # the per-tensor loop (66 -> 21 ms per step on a 28M-parameter U-Net, 1 CPU thread)
        return torch.optim.AdamW(
            params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, fused=True
        )
    # Imagen's base models used Adafactor (sec. 4.1 / appendix); torch ships one since 2.5.
    return torch.optim.Adafactor(
        params, lr=o.lr, beta2_decay=-0.8, weight_decay=o.weight_decay, foreach=False
    )


def init_weights(
    model: torch.nn.Module | None, stage_config: AnyStageConfig, stage_dir: Path
) -> None:
    """Load a model directory stage's weights into ``model`` (``train.init_from``); with
    ``model`` None, only check that the stage fits ``stage_config``."""
    from openimagen.cascade import read_stage_config

    where = f"train.init_from={str(stage_dir)!r}"
    try:
        saved = read_stage_config(stage_dir)
    except OpenImagenError as exc:
        raise ConfigError(f"{where}: not a stage directory of a model directory: {exc}") from exc
    diff = sorted(k for k, v in saved.unet.to_dict().items()
                  if stage_config.unet.to_dict().get(k) != v)  # fmt: skip
    # a text refiner may be added to a stage trained without one: it starts as the identity
    adds_refiner = diff == ["text_refiner_layers"] and saved.unet.text_refiner_layers == 0
    if (diff and not adds_refiner) or saved.resolution != stage_config.resolution:
        raise ConfigError(
            f"{where}: its U-Net differs from [stage] (fields {diff or ['resolution']}); "
            "use the same preset and overrides as the stage it was exported from"
        )
    if model is None:
        return
    stage = load_stage_weights(saved, stage_dir)
    # fp16 files load into float32 params; only a new refiner's weights may be missing
    missing, unexpected = model.load_state_dict(stage.unet.state_dict(), strict=False)
    if unexpected or any(not k.startswith("text_refiner.") for k in missing):
        raise ConfigError(f"{where}: its weights do not fit the U-Net ({missing + unexpected})")
    logger.info("initialised the U-Net from %s", stage_dir)


def lr_factor(config: TrainConfig, step: int) -> float:
    """The learning-rate multiplier at optimizer step ``step`` (0-based).

    Linear warm-up over ``optim.warmup_steps`` (Imagen appendix F), then constant, then,
    with ``optim.decay_steps = D``, a linear decay to 0 over the last D of ``train.steps``
    ("warmup-stable-decay", Hagele et al. 2024). The factor is a function of the config and
    the step alone, so a constant-rate run can be resumed with a longer ``train.steps`` and
    a ``decay_steps`` to cool it down.
    """
    warmup, decay = config.optim.warmup_steps, config.optim.decay_steps
    factor = min(1.0, (step + 1) / warmup) if warmup else 1.0
    if decay:
        factor *= min(1.0, max(0.0, (config.train.steps - step) / decay))
    return factor


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> Any:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(config, step))


@dataclasses.dataclass
class TrainParts:
    """What an optimizer step updates, and where the run stands."""

    model: torch.nn.Module
    ema: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    step: int = 0  # optimizer steps done
    position: int = 0  # global sample position in the data


def build_parts(
    config: TrainConfig,
    stage_config: AnyStageConfig,
    *,
    fresh: bool,
    shard_on: torch.device | None = None,
) -> TrainParts:
    """The U-Net (seeded init, or ``train.init_from`` for a ``fresh`` run), EMA, optimizer and
    schedule, made in this order; a resumed run then restores them (``train.resume.restore``).

    ``shard_on``: shard the U-Net and its EMA over the processes (``train.fsdp``) on this
    device before the optimizer is made over the shards. Every process builds the whole
    seeded U-Net first, so the sharded run starts from the weights of an unsharded one.
    """
    torch.manual_seed(config.train.seed)
    start = config.resolve_path(config.train.init_from) if config.train.init_from else None
    if start is not None and fresh and isinstance(stage_config, DiffusersStageConfig):
        # built on the meta device and given the file's tensors: a multi-billion-parameter
        # imported stage is never initialised at random first
        init_weights(None, stage_config, start)  # the same checks
        model = load_stage_weights(stage_config, start).unet
    else:
        model = Stage(stage_config).unet  # an EfficientUNet, or diffusers' U-Net
        if start is not None and fresh:
            init_weights(model, stage_config, start)
    ema = make_ema(model, config.train.ema_decay, config.train.ema_warmup)
    if config.train.activation_checkpointing:  # after the EMA copy, which never trains
        from openimagen.models import set_activation_checkpointing

        set_activation_checkpointing(model, True)
    if shard_on is not None:
        from openimagen.train.sharding import shard_parts

        shard_parts(model, ema, shard_on)
    optimizer = make_optimizer(config, model.parameters())
    return TrainParts(model, ema, optimizer, make_scheduler(config, optimizer))


__all__ = [
    "TrainParts",
    "build_parts",
    "build_stage_config",
    "init_weights",
    "lr_factor",
    "make_optimizer",
    "make_scheduler",
]
