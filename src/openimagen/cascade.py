"""Stages and cascades: the place where text encoders, U-Nets and diffusion meet.

Imagen (Saharia et al., 2022, sec. 2.5) samples a small text-conditional base model and then
text-conditional super-resolution (SR) stages, each trained on its own. Every SR stage sees
the previous stage's output upsampled to its own size and corrupted by noise conditioning
augmentation (sec. 2.5, Ho et al. 2022 "Cascaded Diffusion Models"), and is told the
augmentation level.

A model directory is plain files:

    cascade.json                    format name and version, text encoder, stage list,
                                    default sampling settings per stage
    <stage>/config.json             StageConfig (U-Net config + diffusion settings)
    <stage>/model.safetensors       (EMA) weights

No pickle anywhere. Saving writes a temporary directory and renames it into place.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from openimagen.config import Config, read_json
from openimagen.device import resolve_device
from openimagen.diffusion import (
    SAMPLERS,
    apply_threshold,
    classifier_free_guidance,
    get_sampler,
    get_schedule,
    model_to_denoiser,
    prepare_lowres,
    randn_per_sample,
    uniform_timesteps,
)
from openimagen.errors import (
    ConfigError,
    InvalidArgumentError,
    ModelDirectoryError,
    NonFiniteOutputError,
)
from openimagen.fileio import atomic_save_file, atomic_write_json, staged_directory
from openimagen.models.unet import EfficientUNet, UNetConfig
from openimagen.text import TextEncoder, check_prompt, load_text_encoder

logger = logging.getLogger(__name__)

FORMAT_NAME = "openimagen-cascade"
FORMAT_VERSION = 1
STAGE_FORMAT_NAME = "openimagen-stage"
CASCADE_FILE = "cascade.json"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

ThresholdKind = Literal["none", "static", "dynamic"]
SamplerName = Literal["ddpm", "ddim", "dpmpp_2m"]
Precision = Literal["fp32", "bf16"]
ProgressFn = Callable[[int, int], None]


# -- configs ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SamplingConfig(Config):
    """How one stage is sampled; cascade.json stores a default per stage."""

    sampler: SamplerName = "dpmpp_2m"
    steps: int = 25
    # classifier-free guidance weight w (Imagen eq. in sec. 2.2); 1 = plain conditional
    guidance_weight: float = 5.0
    threshold: ThresholdKind = "dynamic"
    # Imagen sec. 2.3: s = max(1, this percentile of |x0_hat|)
    dynamic_threshold_percentile: float = 99.5
    # DDIM's eta (0 = deterministic); ignored by other samplers
    eta: float = 0.0
    # SR stages only: noise-augmentation level (diffusion time in [0, 1]) applied to the
    # upsampled low-res input at sampling time (Imagen sec. 2.5)
    noise_aug_level: float = 0.0
    # "bf16": the U-Net's forward under bfloat16 autocast (weights stay as loaded; the
    # sampler's arithmetic, guidance and thresholding stay float32). Faster on GPUs and on
    # CPUs with bf16 support (docs/benchmarks.md); "fp32": full precision.
    precision: Precision = "fp32"

    def validate(self) -> None:
        if self.steps < 1:
            raise InvalidArgumentError("steps", self.steps, "an integer >= 1")
        if not 0.0 <= self.guidance_weight <= 100.0:
            raise InvalidArgumentError(
                "guidance_weight", self.guidance_weight, "a number in [0, 100]"
            )
        if not 0.0 < self.dynamic_threshold_percentile <= 100.0:
            raise InvalidArgumentError(
                "dynamic_threshold_percentile",
                self.dynamic_threshold_percentile,
                "a number in (0, 100]",
            )
        if not 0.0 <= self.eta <= 1.0:  # what the DDIM sampler accepts
            raise InvalidArgumentError("eta", self.eta, "a number in [0, 1]")
        if not 0.0 <= self.noise_aug_level <= 1.0:
            raise InvalidArgumentError(
                "noise_aug_level", self.noise_aug_level, "a number in [0, 1]"
            )
        if self.precision not in ("fp32", "bf16"):
            raise InvalidArgumentError("precision", self.precision, "'fp32' or 'bf16'")


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


# -- a stage -------------------------------------------------------------------------------
class Stage:
    """One diffusion U-Net of the cascade with its config; knows how to sample itself."""

    def __init__(self, config: StageConfig, unet: EfficientUNet | None = None):
        self.config = config
        self.unet = unet if unet is not None else EfficientUNet(config.unet)
        self.unet.eval()
        self.schedule = get_schedule(config.schedule)

    @property
    def is_super_resolution(self) -> bool:
        return self.config.unet.super_resolution

    def model_fn(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        """Raw network output for ``(x_t, t, cond)``; ``cond`` is the dict built by ``sample``."""
        return self.unet(
            x_t,
            t,
            cond["text_embeds"],
            cond["text_mask"],
            lowres=cond.get("lowres"),
            aug_level=cond.get("aug_level"),
        )

    @torch.no_grad()
    def sample(
        self,
        text_embeds: torch.Tensor,
        text_mask: torch.Tensor,
        generators: Sequence[torch.Generator],
        sampling: SamplingConfig,
        *,
        lowres: torch.Tensor | None = None,
        progress: ProgressFn | None = None,
        name: str | None = None,
    ) -> torch.Tensor:
        """Draw one image per row of ``text_embeds``; returns [B, 3, R, R] in [-1, 1].

        Raises :class:`NonFiniteOutputError` (naming the stage as ``name``) when a sample
        holds NaN or infinite values, which clamping to [-1, 1] would otherwise turn into a
        plausible-looking black or white image.
        """
        batch = text_embeds.shape[0]
        device = text_embeds.device
        size = self.config.resolution
        cond: dict[str, Any] = {"text_embeds": text_embeds, "text_mask": text_mask}
        if self.is_super_resolution:
            if lowres is None:
                raise InvalidArgumentError(
                    "lowres", None, "the previous stage's images for an SR stage"
                )
            aug = torch.full((batch,), sampling.noise_aug_level, device=device)  # [B]
            cond["lowres"] = prepare_lowres(lowres, size, aug, self.schedule, generators)
            cond["aug_level"] = aug
        # The unconditional branch: same inputs, every text token masked out.
        uncond = dict(cond, text_mask=torch.zeros_like(text_mask))

        model_fn = self.model_fn
        if sampling.precision == "bf16":
            model_fn = _autocast_bf16(self.model_fn, device)
        denoiser = model_to_denoiser(model_fn, self.schedule, self.config.unet.prediction)
        denoiser = classifier_free_guidance(denoiser, sampling.guidance_weight, uncond)
        denoiser = apply_threshold(
            denoiser, sampling.threshold, sampling.dynamic_threshold_percentile
        )
        shape = (batch, self.config.unet.out_channels, size, size)
        x_T = randn_per_sample(shape, generators, device=device, dtype=text_embeds.dtype)
        timesteps = uniform_timesteps(sampling.steps).to(device)
        extra = {"eta": sampling.eta} if sampling.sampler == "ddim" else {}

        def callback(step: int, total: int, x_t: torch.Tensor, x0_hat: torch.Tensor) -> None:
            if progress is not None:
                progress(step, total)

        x0 = get_sampler(sampling.sampler)(
            denoiser,
            x_T,
            timesteps,
            schedule=self.schedule,
            generator=list(generators),
            callback=callback,
            cond=cond,
            **extra,
        )
        bad = ~torch.isfinite(x0).flatten(1).all(dim=1)  # [B]
        if bool(bad.any()):
            seeds = [g.initial_seed() for g, b in zip(generators, bad.tolist(), strict=True) if b]
            kind = "super-resolution" if self.is_super_resolution else "base"
            raise NonFiniteOutputError(
                f"{name or 'the stage'} ({kind}, {size}x{size}) produced values that are not "
                f"finite (NaN or inf) for seeds {seeds}: its weights may be damaged (check them "
                "with torch.isfinite) or the sampling settings unstable (try precision 'fp32' "
                "or a lower guidance weight)"
            )
        return x0.clamp(-1.0, 1.0)


def _autocast_bf16(
    model_fn: Callable[[torch.Tensor, torch.Tensor, dict[str, Any]], torch.Tensor],
    device: torch.device,
) -> Callable[[torch.Tensor, torch.Tensor, dict[str, Any]], torch.Tensor]:
    """``model_fn`` run under bfloat16 autocast, its output back in float32."""

    def run(x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = model_fn(x_t, t, cond)
        return out.float()

    return run


# -- the cascade ---------------------------------------------------------------------------
class Cascade:
    """A frozen text encoder and a list of stages (base first), sampled in order."""

    def __init__(
        self,
        text_encoder: TextEncoder,
        stages: Sequence[Stage],
        sampling: Sequence[SamplingConfig] | None = None,
        *,
        model_id: str = "",
    ):
        self.text_encoder = text_encoder
        self.stages = list(stages)
        self.sampling = list(sampling) if sampling is not None else [SamplingConfig()] * len(stages)
        self.model_id = model_id
        check_stages([s.config for s in self.stages], text_dim=text_encoder.dim)
        if len(self.sampling) != len(self.stages):
            raise InvalidArgumentError(
                "sampling", f"{len(self.sampling)} entries", f"one per stage ({len(self.stages)})"
            )

    @property
    def device(self) -> torch.device:
        return next(self.stages[0].unet.parameters()).device

    @property
    def resolution(self) -> int:
        return self.stages[-1].config.resolution

    def to(self, device: str | torch.device | None) -> Cascade:
        device = resolve_device(device)
        for stage in self.stages:
            stage.unet.to(device)
        return self

    # -- sampling ------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        *,
        sampling: Sequence[SamplingConfig] | None = None,
        num_stages: int | None = None,
        progress: ProgressFn | None = None,
    ) -> torch.Tensor:
        """Images for ``prompts[i]`` drawn with ``seeds[i]``: [N, 3, R, R] in [-1, 1].

        Image i depends only on its prompt and seed, whatever else is in the batch.
        ``sampling`` overrides the per-stage defaults; ``num_stages`` stops early.
        """
        prompts = list(prompts)
        seeds = [int(s) for s in seeds]
        if not prompts:
            raise InvalidArgumentError("prompts", prompts, "at least one prompt")
        if len(seeds) != len(prompts):
            raise InvalidArgumentError(
                "seeds", f"{len(seeds)} seeds", f"one per prompt ({len(prompts)})"
            )
        for i, prompt in enumerate(prompts):
            check_prompt(prompt, f"prompts[{i}]")
        sampling = list(sampling) if sampling is not None else self.sampling
        if len(sampling) != len(self.stages):
            raise InvalidArgumentError(
                "sampling", f"{len(sampling)} entries", f"{len(self.stages)}"
            )
        count = len(self.stages)
        if num_stages is not None and (
            isinstance(num_stages, bool) or not isinstance(num_stages, int)
            or not 1 <= num_stages <= count
        ):  # fmt: skip
            raise InvalidArgumentError(
                "num_stages", num_stages, f"None (all) or an integer from 1 to {count}",
                f"This model has {count} stage{'s' if count > 1 else ''}.",
            )  # fmt: skip
        stages = self.stages[: num_stages or count]

        text_embeds, text_mask = self.encode(prompts)
        # One generator per image, kept across stages: image i depends only on seed i.
        generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        total = sum(s.steps for s in sampling[: len(stages)])
        done = 0
        image = None
        for index, (stage, settings) in enumerate(zip(stages, sampling, strict=False)):

            def stage_progress(step: int, steps: int, _offset: int = done) -> None:
                if progress is not None:
                    progress(_offset + step + 1, total)

            image = stage.sample(
                text_embeds, text_mask, generators, settings, lowres=image,
                progress=stage_progress, name=f"stage {index}",
            )  # fmt: skip
            done += settings.steps
        return image

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Text embeddings [N, L, D] and mask [N, L]; each distinct prompt encoded once."""
        unique = list(dict.fromkeys(prompts))
        embeds, mask = self.text_encoder.encode(unique)  # [U, L, D], [U, L]
        index = torch.tensor([unique.index(p) for p in prompts])
        device = self.device
        return embeds[index].to(device=device, dtype=torch.float32), mask[index].to(device)

    # -- files ---------------------------------------------------------------------------
    def save(
        self,
        directory: str | os.PathLike,
        *,
        dtype: torch.dtype = torch.float32,
        overwrite: bool = False,
    ) -> Path:
        """Write a model directory; built in a temporary sibling directory, then renamed."""
        directory = Path(directory)
        if directory.exists() and not overwrite:
            raise ModelDirectoryError(
                f"{directory} already exists; choose another path or pass overwrite=True"
            )
        config = CascadeConfig(
            text_encoder=self.text_encoder.name,
            text_max_length=self.text_encoder.max_length,
            stages=tuple(
                StageEntry(path=stage_dir_name(i, s), sampling=self.sampling[i])
                for i, s in enumerate(self.stages)
            ),
            model_id=self.model_id or directory.name,
        )
        with staged_directory(directory) as tmp:
            for entry, stage in zip(config.stages, self.stages, strict=True):
                save_stage(stage, tmp / entry.path, dtype=dtype)
            atomic_write_json(tmp / CASCADE_FILE, config.to_dict())
        return directory

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        text_encoder: TextEncoder | None = None,
    ) -> Cascade:
        """Read and validate a model directory (see module docstring)."""
        directory = Path(directory)
        config = read_cascade_config(directory)
        stage_configs = [read_stage_config(directory / e.path) for e in config.stages]
        if text_encoder is None:
            text_encoder = load_text_encoder(
                resolve_text_encoder_name(config.text_encoder, directory),
                max_length=config.text_max_length,
                device=resolve_device(device),
            )
        check_stages(stage_configs, text_dim=text_encoder.dim, where=str(directory))
        stages = [
            load_stage_weights(sc, directory / e.path)
            for sc, e in zip(stage_configs, config.stages, strict=True)
        ]
        cascade = cls(
            text_encoder,
            stages,
            [e.sampling for e in config.stages],
            model_id=config.model_id or directory.name,
        )
        return cascade.to(device)


# -- model-directory helpers -----------------------------------------------------------------
def stage_dir_name(index: int, stage: Stage) -> str:
    kind = "sr" if stage.is_super_resolution else "base"
    return f"stage{index}_{kind}{stage.config.resolution}"


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


def read_cascade_config(directory: Path) -> CascadeConfig:
    if not directory.is_dir():
        raise ModelDirectoryError(
            f"model directory {directory} does not exist or is not a directory"
        )
    path = directory / CASCADE_FILE
    if not path.is_file():
        raise ModelDirectoryError(
            f"{directory} is not an openimagen model directory: {CASCADE_FILE} is missing"
        )
    try:
        return CascadeConfig.from_dict(read_json(path), where=str(path))
    except ConfigError as exc:
        raise ModelDirectoryError(str(exc)) from exc


def read_stage_config(stage_dir: Path) -> StageConfig:
    path = stage_dir / CONFIG_FILE
    if not path.is_file():
        raise ModelDirectoryError(f"stage directory {stage_dir}: {CONFIG_FILE} is missing")
    try:
        return StageConfig.from_dict(read_json(path), where=str(path))
    except ConfigError as exc:
        raise ModelDirectoryError(str(exc)) from exc


def save_stage(stage: Stage, stage_dir: Path, *, dtype: torch.dtype = torch.float32) -> None:
    stage_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", dtype) for k, v in stage.unet.state_dict().items()}
    meta = {"format": STAGE_FORMAT_NAME, "version": str(FORMAT_VERSION)}
    atomic_save_file(tensors, stage_dir / WEIGHTS_FILE, metadata=meta)
    atomic_write_json(stage_dir / CONFIG_FILE, stage.config.to_dict())


def load_stage_weights(config: StageConfig, stage_dir: Path) -> Stage:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = stage_dir / WEIGHTS_FILE
    if not path.is_file():
        raise ModelDirectoryError(f"stage directory {stage_dir}: {WEIGHTS_FILE} is missing")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelDirectoryError(f"{path} is not a readable safetensors file: {exc}") from exc
    stage = Stage(config)
    expected = stage.unet.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ModelDirectoryError(
            f"{path} does not match {stage_dir / CONFIG_FILE}: "
            f"{len(missing)} missing tensors (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise ModelDirectoryError(
                f"{path}: tensor {name} has shape {tuple(tensor.shape)}, the config needs "
                f"{tuple(expected[name].shape)}"
            )
        # NaN weights would sample a black image without any error
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelDirectoryError(
                f"{path}: tensor {name} holds values that are not finite (NaN or inf); the "
                "weights are damaged: export the stage again from an intact checkpoint"
            )
    # weights may be stored in fp16 (bundled model); compute in the module's own dtype
    stage.unet.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})
    stage.unet.eval()
    return stage


def resolve_text_encoder_name(name: str, directory: Path) -> str:
    """A text encoder given as a relative path is looked up inside the model directory."""
    local = directory / name
    if not Path(name).is_absolute() and local.is_dir():
        return str(local)
    return name


__all__ = [
    "CASCADE_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SAMPLERS",
    "Cascade",
    "CascadeConfig",
    "SamplingConfig",
    "Stage",
    "StageConfig",
    "StageEntry",
    "check_stages",
    "prepare_lowres",
]
