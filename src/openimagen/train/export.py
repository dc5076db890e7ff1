"""Export a trained stage (its EMA weights) from a checkpoint into a model directory.

Where it goes depends on the target and the stage:

* the target holds a ``cascade.json``: the stage is put into that cascade. A base stage
  replaces stage 0; an SR stage replaces the SR stage with the same low-res input size, or
  is appended when its input size is the last stage's output size. The cascade's stages
  are checked to chain (base first, each SR input = previous output) and use the same text
  encoder, so a cascade is built one ``export`` per trained stage, base first.
* no cascade there and a base stage: a new one-stage cascade directory is written.
* no cascade there and an SR stage: a bare stage directory (``config.json`` +
  ``model.safetensors``), to be exported again into a cascade later.

The files are written by :mod:`openimagen.cascade.modeldir` (each directory built aside,
then renamed into place); no text encoder is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from openimagen.cascade import (
    CASCADE_FILE,
    TRAINING_FILE,
    DiffusersStageConfig,
    SamplingConfig,
    Stage,
    parse_stage_config,
    put_stage,
    read_cascade_config,
    read_stage_config,
    resolve_text_encoder_name,
    write_model_directory,
    write_stage_directory,
)
from openimagen.errors import ConfigError, ModelDirectoryError
from openimagen.modelcard import training_record, write_model_card
from openimagen.train import checkpoint as ckpt


def resolve_checkpoint(checkpoint: str | os.PathLike) -> Path:
    """A ``step_N`` directory as given, or a run directory's newest intact checkpoint."""
    path = Path(checkpoint)
    if not (path / ckpt.STATE_FILE).exists() and (path / "checkpoints").is_dir():
        found = ckpt.find_resumable(path / "checkpoints")
        if found is None:
            raise ModelDirectoryError(f"{path}: no intact checkpoint under {path / 'checkpoints'}")
        path = found
    return path


def load_ema_stage(checkpoint: str | os.PathLike) -> tuple[Stage, dict]:
    """The EMA weights of a checkpoint as a :class:`Stage`, plus the checkpoint's state.

    ``checkpoint`` is a ``step_N`` directory or a training output directory (its newest
    intact checkpoint is used).
    """
    path = resolve_checkpoint(checkpoint)
    state, tensors = ckpt.read_checkpoint(path)
    try:
        stage_config = parse_stage_config(state["stage_config"], where=f"{path}: stage_config")
    except (KeyError, ConfigError) as exc:
        raise ModelDirectoryError(f"{path}: unreadable stage config: {exc}") from exc
    weights = {
        k.removeprefix("module."): v for k, v in tensors["ema"].items() if k.startswith("module.")
    }
    stage = Stage(stage_config)
    try:
        stage.unet.load_state_dict(weights)
    except RuntimeError as exc:
        raise ModelDirectoryError(
            f"{path}: EMA weights do not fit the stage config: {exc}"
        ) from exc
    stage.unet.eval()
    return stage, state


def export_stage(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    sampling: SamplingConfig | None = None,
    sampling_overrides: dict | None = None,
    dtype: torch.dtype = torch.float32,
    overwrite: bool = False,
) -> Path:
    """Write the stage of ``checkpoint`` into ``output_dir`` (see the module docstring).

    The stage's default sampling is ``sampling``, or else the defaults with the noise-aug
    level the training run sampled its grids at (``log.sample_aug_level``, SR stages);
    ``sampling_overrides`` (SamplingConfig field -> value) are applied on top.
    """
    given = sampling
    stage, state = load_ema_stage(checkpoint)
    record = training_record(state, resolve_checkpoint(checkpoint))
    text = state["config"]["text"]
    if sampling is None:
        trained = state["config"]["log"].get("sample_aug_level", 0.0)
        sampling = SamplingConfig(noise_aug_level=trained if stage.is_super_resolution else 0.0)
    out = Path(output_dir)
    if (out / CASCADE_FILE).is_file():
        # a fine-tuned imported stage keeps the defaults it had (IF's); others get the above
        imported = isinstance(stage.config, DiffusersStageConfig)
        replaced = _replaced_sampling(out, stage) if given is None and imported else None
        sampling = (replaced or sampling).replace(**(sampling_overrides or {}))
        _into_cascade(stage, out, sampling, text, dtype, record, state["config"].get("base_dir"))
        write_model_card(out)
        return out
    if out.exists() and not overwrite and any(out.iterdir()):
        raise ModelDirectoryError(
            f"{out} exists and is not an openimagen model directory ({CASCADE_FILE} missing); "
            "choose an empty or new directory, or pass overwrite=True"
        )
    sampling = sampling.replace(**(sampling_overrides or {}))
    records = {TRAINING_FILE: record}
    if not stage.is_super_resolution:
        write_model_directory(
            out,
            [stage],
            [sampling],
            text_encoder=text["encoder"],
            text_max_length=text["max_length"],
            dtype=dtype,
            overwrite=True,
            records=[records],
        )
        write_model_card(out)
        return out
    return write_stage_directory(stage, out, dtype=dtype, records=records)


def _into_cascade(
    stage: Stage,
    directory: Path,
    sampling: SamplingConfig,
    text: dict,
    dtype: torch.dtype,
    record: dict,
    base_dir: str | None = None,
) -> Path:
    """Put the stage into the cascade at ``directory``, trained with its text encoder (the
    same name, or the same directory: e.g. an imported model's own ``text_encoder/``)."""
    config = read_cascade_config(directory)
    encoder = text["encoder"]
    if not _same_encoder(config.text_encoder, directory, encoder, base_dir):
        raise ModelDirectoryError(
            f"{directory} uses text encoder {config.text_encoder!r} but the stage was trained "
            f"with {encoder!r}; export into a cascade built with the same text encoder"
        )
    if config.text_max_length != text["max_length"]:
        raise ModelDirectoryError(
            f"{directory} encodes prompts to {config.text_max_length} tokens but the stage was "
            f"trained on {text['max_length']} (text.max_length); train it with the same length"
        )
    conditioning = text.get("conditioning", "masked")
    if config.text_conditioning != conditioning:
        raise ModelDirectoryError(
            f"{directory} conditions its stages as {config.text_conditioning!r} but the stage "
            f"was trained with text.conditioning={conditioning!r}; train it with the same"
        )
    put_stage(directory, stage, sampling, dtype=dtype, records={TRAINING_FILE: record})
    return directory


def _same_encoder(name: str, directory: Path, trained: str, base_dir: str | None) -> bool:
    if name == trained:
        return True
    ours = Path(resolve_text_encoder_name(name, directory))
    theirs = Path(trained) if Path(trained).is_absolute() else Path(base_dir or ".") / trained
    try:
        return ours.is_dir() and theirs.is_dir() and os.path.samefile(ours, theirs)
    except OSError:
        return False


def _replaced_sampling(directory: Path, stage: Stage) -> SamplingConfig | None:
    """The default sampling of the stage of ``directory`` that ``stage`` will replace (same
    kind and resolution), kept when a stage is fine-tuned in place (IF's settings)."""
    config = read_cascade_config(directory)
    for entry in config.stages:
        old = read_stage_config(directory / entry.path)
        same_kind = old.unet.super_resolution == stage.is_super_resolution
        if same_kind and old.resolution == stage.config.resolution:
            return entry.sampling
    return None


__all__ = ["export_stage", "load_ema_stage", "resolve_checkpoint"]
