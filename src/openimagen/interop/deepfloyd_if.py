"""DeepFloyd IF checkpoints (the diffusers layout) -> an openimagen model directory.

:func:`import_deepfloyd_if` reads IF stage I (and II) directories (:mod:`.if_checkpoint`)
without any network access and writes a model directory whose stages run diffusers' own
U-Net (:class:`~openimagen.cascade.DiffusersStageConfig`):

- per stage, the U-Net weights (renamed ``unet.*``, in the checkpoint's dtype or ``dtype``)
  and the checkpoint's scheduler settings (1000-step squaredcos_cap_v2, epsilon prediction,
  learned-range variance, dynamic thresholding 0.95 with IF's maximum); the stages are
  loaded one at a time, so importing needs the memory of the largest stage only;
- IF's default sampling in cascade.json (:data:`IF_DEFAULT_SAMPLING`) and its text
  conditioning ("deepfloyd-if": 77 tokens, the empty prompt as the unconditional branch);
- the T5 and its tokenizer in ``text_encoder/`` (:mod:`.if_text`; hard links, not copies,
  where the file system allows);
- every licence and model card file of the checkpoints, as they are, in
  ``<stage>/upstream/``, beside openimagen's own card (README.md).

Nothing is written unless every check passes; the directory is built out of sight and
renamed into place.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from openimagen.cascade import (
    CASCADE_FILE,
    UPSTREAM_DIR,
    DiffusersStageConfig,
    SamplingConfig,
    Stage,
    build_cascade_config,
    save_stage,
)
from openimagen.errors import ModelDirectoryError
from openimagen.fileio import atomic_write_json, staged_directory
from openimagen.interop.if_checkpoint import IFCheckpoint, read_if_checkpoint, refuse
from openimagen.interop.if_text import check_same_text_encoder, text_config, write_text_encoder
from openimagen.modelcard import write_model_card
from openimagen.models import DiffusersUNetConfig

logger = logging.getLogger(__name__)

#: IF's own defaults (diffusers' IFPipeline / IFSuperResolutionPipeline __call__): steps,
#: guidance, and stage II's noise level 250, an image-noising timestep: t = (250 + 1) / 1000.
IF_DEFAULT_SAMPLING = {
    1: SamplingConfig(sampler="ddpm", steps=100, guidance_weight=7.0),
    2: SamplingConfig(sampler="ddpm", steps=50, guidance_weight=4.0, noise_aug_level=0.251),
}
IF_TEXT_MAX_LENGTH = 77  # "the text encoder was trained with a max length of 77 for IF"
TEXT_ENCODER_DIR = "text_encoder"
_PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
#: the ``dtype`` choices of :func:`import_deepfloyd_if` besides "auto"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# -- the stage configs ------------------------------------------------------------------------
def _scheduler_settings(ckpt: IFCheckpoint) -> dict[str, Any]:
    """What openimagen takes from a DDPMScheduler config, refusing what it cannot reproduce."""
    s = ckpt.scheduler
    where = "scheduler/scheduler_config.json"
    if s.get("_class_name", "DDPMScheduler") != "DDPMScheduler":
        raise refuse(ckpt.path, f"{where} is a {s.get('_class_name')!r}, expected DDPMScheduler")
    if s.get("trained_betas") is not None or s.get("rescale_betas_zero_snr"):
        raise refuse(ckpt.path, f"{where}: trained_betas / rescale_betas_zero_snr are not "
                      "supported")  # fmt: skip
    beta = s.get("beta_schedule", "linear")
    if beta not in ("squaredcos_cap_v2", "linear") or (beta == "linear" and (
            s.get("beta_start", 1e-4), s.get("beta_end", 0.02)) != (1e-4, 0.02)):  # fmt: skip
        raise refuse(ckpt.path, f"{where}: beta schedule {beta!r} is not supported "
                      "(squaredcos_cap_v2, or linear from 1e-4 to 0.02)")  # fmt: skip
    prediction = s.get("prediction_type", "epsilon")
    variance = s.get("variance_type", "fixed_small")
    if prediction not in _PREDICTIONS or variance not in ("learned_range", "fixed_small"):
        raise refuse(ckpt.path, f"{where}: prediction_type {prediction!r} / variance_type "
                      f"{variance!r} is not supported")  # fmt: skip
    image_channels = 3
    out = ckpt.unet_config.get("out_channels")
    if out != (2 * image_channels if variance == "learned_range" else image_channels):
        raise refuse(ckpt.path, f"unet out_channels={out} does not fit variance_type "
                      f"{variance!r}")  # fmt: skip
    spacing = s.get("timestep_spacing")  # absent in IF's own files: diffusers' class defaults
    settings: dict[str, Any] = {
        "beta_schedule": beta,
        "num_train_timesteps": int(s.get("num_train_timesteps", 1000)),
        "steps_offset": int(s.get("steps_offset", 0)),
        "prediction": _PREDICTIONS[prediction],
        "learned_variance": variance == "learned_range",
    }
    if spacing is not None:
        settings["timestep_spacing"] = {"ddpm": spacing, "ddim": spacing, "dpmpp_2m": spacing}
    if s.get("thresholding"):
        settings["threshold"] = ("dynamic", 100.0 * float(s.get("dynamic_thresholding_ratio", 0.995)))
        settings["dynamic_threshold_max"] = float(s.get("sample_max_value", 1.0))
    elif s.get("clip_sample", True) and float(s.get("clip_sample_range", 1.0)) == 1.0:
        settings["threshold"] = ("static", 99.5)
    else:
        settings["threshold"] = ("none", 99.5)
    return settings


def _stage_config(ckpt: IFCheckpoint, lowres_resolution: int | None) -> tuple[
        DiffusersStageConfig, SamplingConfig]:  # fmt: skip
    s = _scheduler_settings(ckpt)
    unet = DiffusersUNetConfig(
        diffusers_config={k: v for k, v in ckpt.unet_config.items() if not k.startswith("_")},
        prediction=s["prediction"],
        learned_variance=s["learned_variance"],
    )
    fields: dict[str, Any] = {
        "unet": unet,
        "resolution": unet.image_size,
        "lowres_resolution": lowres_resolution,
        "beta_schedule": s["beta_schedule"],
        "num_train_timesteps": s["num_train_timesteps"],
        "steps_offset": s["steps_offset"],
        "dynamic_threshold_max": s.get("dynamic_threshold_max"),
        "source": f"DeepFloyd IF {ckpt.pipeline} from {ckpt.path.name}",
    }
    if "timestep_spacing" in s:
        fields["timestep_spacing"] = s["timestep_spacing"]
    if ckpt.noising_scheduler is not None:
        n = ckpt.noising_scheduler
        fields["noise_level_schedule"] = n.get("beta_schedule", "linear")
        fields["noise_level_timesteps"] = int(n.get("num_train_timesteps", 1000))
    try:
        config = DiffusersStageConfig(**fields)
    except Exception as exc:  # a ConfigError naming the field: one line with the directory
        raise refuse(ckpt.path, f"cannot be read as an openimagen stage: {exc}") from exc
    kind, percentile = s["threshold"]
    sampling = IF_DEFAULT_SAMPLING[ckpt.stage].replace(
        threshold=kind, dynamic_threshold_percentile=percentile
    )
    return config, sampling


def _load_stage(ckpt: IFCheckpoint, config: DiffusersStageConfig) -> Stage:
    """The stage with the checkpoint's U-Net weights (built on the meta device, then assigned)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for path in ckpt.unet_files:
        if path.suffix != ".safetensors":
            continue
        try:
            tensors.update(load_file(path))
        except (SafetensorError, OSError) as exc:
            raise refuse(
                ckpt.path, f"{path.name} is not a readable safetensors file ({exc})"
            ) from exc
    with torch.device("meta"):
        stage = Stage(config)
    expected = stage.unet.unet.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise refuse(
            ckpt.path, f"the U-Net weights do not match unet/config.json ({len(missing)} missing "
            f"e.g. {missing[:2]}, {len(unexpected)} unexpected e.g. {unexpected[:2]}, "
            f"{len(wrong)} misshaped e.g. {wrong[:2]})", "download the checkpoint again",
        )  # fmt: skip
    stage.unet.unet.load_state_dict(tensors, assign=True)
    stage.unet.eval()
    return stage


def _write_upstream(ckpt: IFCheckpoint, stage_dir: Path) -> None:
    """The checkpoint's licence and model card, as they are, in ``<stage>/upstream/``."""
    if not ckpt.upstream_files:
        logger.warning("%s has no LICENSE or README.md to carry over", ckpt.path)
        return
    upstream = stage_dir / UPSTREAM_DIR
    upstream.mkdir(exist_ok=True)
    for path in ckpt.upstream_files:
        shutil.copy2(path, upstream / path.name)


# -- the import -------------------------------------------------------------------------------
def import_deepfloyd_if(
    stage1: str | os.PathLike,
    stage2: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    dtype: str = "auto",
    variant: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Make the model directory ``out`` from IF stage I (and II) checkpoints; returns ``out``.

    ``dtype`` is what the U-Net weights are stored in: "auto" (the checkpoint's), "fp32",
    "fp16" or "bf16". ``variant`` picks a weight variant of the checkpoint ("fp16": the
    ``*.fp16.safetensors`` files); by default the plain files, else the fp16 ones. Nothing is
    written unless every check passes (module docstring); an existing ``out`` is refused
    unless ``overwrite``.
    """
    out = Path(out)
    if dtype != "auto" and dtype not in DTYPES:
        raise ModelDirectoryError(f"--dtype={dtype!r}: expected auto, {', '.join(DTYPES)}")
    if out.exists() and not overwrite:
        raise ModelDirectoryError(f"{out} already exists; choose another OUT_DIR or pass --overwrite")
    checkpoints = [read_if_checkpoint(stage1, expected_stage=1, variant=variant)]
    if stage2 is not None:
        checkpoints.append(read_if_checkpoint(stage2, expected_stage=2, variant=variant))
        if checkpoints[1].text_encoder_files is not None:
            check_same_text_encoder(checkpoints[0], checkpoints[1])
    configs, sampling = _stage_configs(checkpoints)
    cascade = build_cascade_config(
        configs, sampling, text_encoder=TEXT_ENCODER_DIR, text_max_length=IF_TEXT_MAX_LENGTH,
        model_id=out.name, text_conditioning="deepfloyd-if",
    )  # fmt: skip
    with staged_directory(out) as staged:
        # the text encoder first: its tokenizer is loaded once, the last check that can fail
        write_text_encoder(checkpoints[0], staged / TEXT_ENCODER_DIR)
        for entry, ckpt, config in zip(cascade.stages, checkpoints, configs, strict=True):
            stage = _load_stage(ckpt, config)  # one stage in memory at a time
            first = next(v for v in stage.unet.state_dict().values() if v.is_floating_point())
            store = first.dtype if dtype == "auto" else DTYPES[dtype]
            save_stage(stage, staged / entry.path, dtype=store)
            del stage, first
            _write_upstream(ckpt, staged / entry.path)
        atomic_write_json(staged / CASCADE_FILE, cascade.to_dict())
    write_model_card(out)
    return out


def _stage_configs(
    checkpoints: list[IFCheckpoint],
) -> tuple[list[DiffusersStageConfig], list[SamplingConfig]]:
    """Each checkpoint's stage config and default sampling; every U-Net must read the width
    of stage I's T5."""
    text_dim = int(text_config(checkpoints[0]).get("d_model", 0))
    configs: list[DiffusersStageConfig] = []
    sampling: list[SamplingConfig] = []
    for ckpt in checkpoints:
        lowres = configs[-1].resolution if configs else None
        config, settings = _stage_config(ckpt, lowres)
        if config.unet.text_embed_dim != text_dim:
            raise refuse(
                ckpt.path, f"its U-Net reads text embeddings of width {config.unet.text_embed_dim}"
                f" but stage I's T5 gives {text_dim}", "pass IF checkpoints that belong together",
            )  # fmt: skip
        configs.append(config)
        sampling.append(settings)
    return configs, sampling


__all__ = [
    "DTYPES",
    "IF_DEFAULT_SAMPLING",
    "IF_TEXT_MAX_LENGTH",
    "TEXT_ENCODER_DIR",
    "import_deepfloyd_if",
]
