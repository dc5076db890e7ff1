"""Reading and writing model directories (layout: :mod:`openimagen.cascade.schema`).

Everything here works on files and stages alone; no text encoder is loaded, so training's
export and the evaluation tools can write and inspect a model directory without one.
Every directory is built out of sight and renamed into place
(:func:`openimagen.fileio.staged_directory`); every file is written atomically.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from openimagen.cascade.sampling import SamplingConfig
from openimagen.cascade.schema import (
    CASCADE_FILE,
    CONFIG_FILE,
    UPSTREAM_DIR,
    WEIGHTS_FILE,
    AnyStageConfig,
    CascadeConfig,
    DiffusersStageConfig,
    StageEntry,
    cascade_version,
    check_stages,
    parse_stage_config,
    stage_dir_name,
)
from openimagen.cascade.stage import Stage
from openimagen.config import read_json
from openimagen.errors import ConfigError, ModelDirectoryError
from openimagen.fileio import atomic_save_file, atomic_write_json, staged_directory


# -- reading ---------------------------------------------------------------------------------
def read_cascade_config(directory: Path) -> CascadeConfig:
    """``directory/cascade.json``, validated; a missing or foreign one names what is wrong."""
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


def read_stage_config(stage_dir: Path) -> AnyStageConfig:
    """``stage_dir/config.json``, validated: a :class:`StageConfig`, or a
    :class:`DiffusersStageConfig` when its format says so."""
    path = stage_dir / CONFIG_FILE
    if not path.is_file():
        raise ModelDirectoryError(f"stage directory {stage_dir}: {CONFIG_FILE} is missing")
    try:
        return parse_stage_config(read_json(path), where=str(path))
    except ConfigError as exc:
        raise ModelDirectoryError(str(exc)) from exc


def load_stage_weights(
    config: AnyStageConfig, stage_dir: Path, *, dtype: torch.dtype | None = None
) -> Stage:
    """The :class:`Stage` of ``config`` with the weights of ``stage_dir/model.safetensors``.

    Every tensor must be there with the config's shape and hold finite values. ``dtype``
    (default float32) is the dtype the weights are held and computed in. A diffusers U-Net
    is built on the meta device and takes the file's tensors directly, so a multi-billion
    parameter stage is never initialised at random first.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = stage_dir / WEIGHTS_FILE
    if not path.is_file():
        raise ModelDirectoryError(f"stage directory {stage_dir}: {WEIGHTS_FILE} is missing")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelDirectoryError(f"{path} is not a readable safetensors file: {exc}") from exc
    meta = isinstance(config, DiffusersStageConfig)
    if meta:
        with torch.device("meta"):
            stage = Stage(config)
    else:
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
    # weights may be stored in fp16 (bundled model); compute in float32 unless asked
    target = dtype or torch.float32
    cast = {k: v.to(target if v.is_floating_point() else v.dtype) for k, v in tensors.items()}
    stage.unet.load_state_dict(cast, assign=meta)
    if not meta and dtype is not None:
        stage.unet.to(dtype)
    stage.unet.eval()
    return stage


def resolve_text_encoder_name(name: str, directory: Path) -> str:
    """A text encoder given as a relative path is looked up inside the model directory."""
    local = directory / name
    if not Path(name).is_absolute() and local.is_dir():
        return str(local)
    return name


# -- writing ---------------------------------------------------------------------------------
def save_stage(
    stage: Stage,
    stage_dir: Path,
    *,
    dtype: torch.dtype = torch.float32,
    records: Mapping[str, Any] | None = None,
) -> None:
    """Write ``stage``'s ``model.safetensors`` and ``config.json`` into ``stage_dir``.

    ``records`` (file name -> JSON value, such as ``training.json``) are written beside them.
    """
    stage_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", dtype) for k, v in stage.unet.state_dict().items()}
    meta = {"format": stage.config.format, "version": str(stage.config.version)}
    atomic_save_file(tensors, stage_dir / WEIGHTS_FILE, metadata=meta)
    atomic_write_json(stage_dir / CONFIG_FILE, stage.config.to_dict())
    for name, record in (records or {}).items():
        atomic_write_json(stage_dir / name, record)


def write_stage_directory(
    stage: Stage,
    directory: str | os.PathLike,
    *,
    dtype: torch.dtype = torch.float32,
    records: Mapping[str, Any] | None = None,
) -> Path:
    """A bare stage directory (no cascade.json), built aside and renamed into place."""
    with staged_directory(directory) as staged:
        save_stage(stage, staged, dtype=dtype, records=records)
    return Path(directory)


def build_cascade_config(
    configs: Sequence[AnyStageConfig],
    sampling: Sequence[SamplingConfig],
    *,
    text_encoder: str,
    text_max_length: int,
    model_id: str,
    text_conditioning: str = "masked",
) -> CascadeConfig:
    """The ``cascade.json`` of stages with these configs (checked to chain) and sampling."""
    check_stages(configs, text_dim=configs[0].unet.text_embed_dim if configs else 0)
    return CascadeConfig(
        text_encoder=text_encoder,
        text_max_length=text_max_length,
        stages=tuple(
            StageEntry(path=stage_dir_name(i, c), sampling=s)
            for i, (c, s) in enumerate(zip(configs, sampling, strict=True))
        ),
        model_id=model_id,
        text_conditioning=text_conditioning,
        version=cascade_version(configs, text_conditioning),
    )


def write_model_directory(
    directory: str | os.PathLike,
    stages: Sequence[Stage],
    sampling: Sequence[SamplingConfig],
    *,
    text_encoder: str,
    text_max_length: int,
    model_id: str = "",
    dtype: torch.dtype = torch.float32,
    overwrite: bool = False,
    records: Sequence[Mapping[str, Any]] | None = None,
    text_conditioning: str = "masked",
) -> Path:
    """Write a whole model directory: every stage, then ``cascade.json``.

    ``text_encoder`` and ``text_max_length`` are what cascade.json names (the encoder itself
    is not needed); ``model_id`` defaults to the directory's name; ``records[i]`` are extra
    JSON files of stage i (:func:`save_stage`). An existing ``directory`` is refused unless
    ``overwrite``.
    """
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise ModelDirectoryError(
            f"{directory} already exists; choose another path or pass overwrite=True"
        )
    config = build_cascade_config(
        [s.config for s in stages], sampling, text_encoder=text_encoder,
        text_max_length=text_max_length, model_id=model_id or directory.name,
        text_conditioning=text_conditioning,
    )  # fmt: skip
    per_stage = list(records) if records is not None else [None] * len(stages)
    with staged_directory(directory) as staged:
        for entry, stage, extra in zip(config.stages, stages, per_stage, strict=True):
            save_stage(stage, staged / entry.path, dtype=dtype, records=extra)
        atomic_write_json(staged / CASCADE_FILE, config.to_dict())
    return directory


def put_stage(
    directory: Path,
    stage: Stage,
    sampling: SamplingConfig,
    *,
    dtype: torch.dtype = torch.float32,
    records: Mapping[str, Any] | None = None,
) -> str:
    """Put ``stage`` into the model directory ``directory``; returns its sub-directory.

    A base stage replaces stage 0; an SR stage replaces the SR stage with the same low-res
    input size, or is appended when its input size is the last stage's output size. The
    stages must still chain (:func:`openimagen.cascade.check_stages`). The stage directory
    is written first (staged), then cascade.json; a replaced stage's old directory, when its
    name changed, is removed last.
    """
    config = read_cascade_config(directory)
    entries = list(config.stages)
    configs = [read_stage_config(directory / e.path) for e in entries]
    new = stage.config
    if not new.unet.super_resolution:
        index = 0
    else:
        same = [i for i, c in enumerate(configs) if c.lowres_resolution == new.lowres_resolution]
        index = same[0] if same else len(entries)
    configs[index : index + 1] = [new]
    check_stages(configs, text_dim=new.unet.text_embed_dim, where=str(directory))
    name = stage_dir_name(index, new)
    old_path = entries[index].path if index < len(entries) else None
    entries[index : index + 1] = [StageEntry(path=name, sampling=sampling)]
    upstream = directory / old_path / UPSTREAM_DIR if old_path else None
    # a fine-tuned imported stage (same diffusers U-Net) stays under the upstream licence
    keep = upstream is not None and upstream.is_dir() and isinstance(new, DiffusersStageConfig)
    keep = keep and read_stage_config(directory / old_path).unet == new.unet
    with staged_directory(directory / name) as staged:
        save_stage(stage, staged, dtype=dtype, records=records)
        if keep:
            shutil.copytree(upstream, staged / UPSTREAM_DIR)
    atomic_write_json(
        directory / CASCADE_FILE,
        CascadeConfig.from_dict(
            {**config.to_dict(), "stages": [e.to_dict() for e in entries],
             "version": max(config.version, cascade_version(configs, config.text_conditioning))}
        ).to_dict(),  # fmt: skip
    )
    if old_path and old_path != name:
        shutil.rmtree(directory / old_path, ignore_errors=True)
    return name


__all__ = [
    "build_cascade_config",
    "load_stage_weights",
    "put_stage",
    "read_cascade_config",
    "read_stage_config",
    "resolve_text_encoder_name",
    "save_stage",
    "write_model_directory",
    "write_stage_directory",
]
