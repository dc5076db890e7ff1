"""DeepFloyd IF checkpoints (the diffusers layout) -> an openimagen model directory.

DeepFloyd IF (huggingface.co/DeepFloyd: IF-I-M/L/XL-v1.0 for 64x64, IF-II-M/L-v1.0 for
64 -> 256) publishes each stage as a diffusers pipeline directory::

    model_index.json                      _class_name IFPipeline (stage I) or
                                          IFSuperResolutionPipeline (stage II)
    unet/config.json                      a UNet2DConditionModel
    unet/diffusion_pytorch_model[.fp16].safetensors    (or shards + an index)
    scheduler/scheduler_config.json       a DDPMScheduler: 1000 steps of squaredcos_cap_v2,
                                          epsilon, learned_range, dynamic thresholding
    image_noising_scheduler/...           stage II: the schedule of its low-res noise
    text_encoder/config.json + model[.fp16].safetensors   T5-v1.1-XXL's encoder
    tokenizer/                            T5's sentencepiece tokenizer
    LICENSE*, README.md                   the licence and model card

:func:`import_deepfloyd_if` reads them without any network access and writes a model
directory whose stages run diffusers' own U-Net (:class:`~openimagen.cascade.DiffusersStageConfig`):
the U-Net weights (renamed ``unet.*``), the checkpoint's scheduler settings and IF's default
sampling in cascade.json, the T5 and its tokenizer in ``text_encoder/``, and every licence
and model card file of the checkpoints in ``<stage>/upstream/`` beside openimagen's own card.
Pickled weights (``.bin``) are never read. Every refusal is one :class:`ModelDirectoryError`
line naming the directory, what is wrong and the fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from openimagen.cascade import (
    UPSTREAM_DIR,
    DiffusersStageConfig,
    SamplingConfig,
    Stage,
    stage_dir_name,
    write_model_directory,
)
from openimagen.errors import ModelDirectoryError
from openimagen.modelcard import write_model_card
from openimagen.models import DiffusersUNetConfig

logger = logging.getLogger(__name__)

#: model_index.json's pipeline class -> IF stage
PIPELINES = {"IFPipeline": 1, "IFSuperResolutionPipeline": 2}
STAGE_NAMES = {1: "stage I (IFPipeline, 64x64 from text)",
               2: "stage II (IFSuperResolutionPipeline, 64 -> 256)"}  # fmt: skip
#: IF's own defaults (diffusers' IFPipeline / IFSuperResolutionPipeline __call__): steps,
#: guidance, and stage II's noise level 250, an image-noising timestep: t = (250 + 1) / 1000.
IF_DEFAULT_SAMPLING = {
    1: SamplingConfig(sampler="ddpm", steps=100, guidance_weight=7.0),
    2: SamplingConfig(sampler="ddpm", steps=50, guidance_weight=4.0, noise_aug_level=0.251),
}
IF_TEXT_MAX_LENGTH = 77  # "the text encoder was trained with a max length of 77 for IF"
TEXT_ENCODER_DIR = "text_encoder"
_PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
_TOKENIZER_FILES = ("tokenizer.json", "spiece.model")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclasses.dataclass(frozen=True)
class IFCheckpoint:
    """One IF stage directory, checked: what :func:`import_deepfloyd_if` reads from it."""

    path: Path
    stage: int  # 1 or 2
    pipeline: str
    unet_config: dict[str, Any]
    scheduler: dict[str, Any]
    noising_scheduler: dict[str, Any] | None
    unet_files: tuple[Path, ...]
    text_encoder_files: tuple[Path, ...] | None
    tokenizer_files: tuple[Path, ...] | None
    upstream_files: tuple[Path, ...]


# -- reading one checkpoint -------------------------------------------------------------------
def _refuse(path: Path, what: str, fix: str = "") -> ModelDirectoryError:
    return ModelDirectoryError(f"{path}: {what}" + (f"; {fix}" if fix else ""))


def _read_json(path: Path, root: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _refuse(
            root, f"not a DeepFloyd IF checkpoint in the diffusers layout ({path.relative_to(root)} "
            "is missing)", "pass a directory downloaded from huggingface.co/DeepFloyd",
        ) from None  # fmt: skip
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refuse(root, f"{path.relative_to(root)} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise _refuse(root, f"{path.relative_to(root)} is not a JSON object")
    return data


def _weight_files(directory: Path, stem: str, root: Path, variant: str | None) -> tuple[Path, ...]:
    """The safetensors file(s) of a diffusers / transformers component, shards included.

    Preference: the ``variant`` files if asked (e.g. "fp16"), else the plain ones, else any
    fp16 variant. Pickled ``.bin`` weights are refused, never read.
    """
    names = [f"{stem}.{variant}" if variant else stem] + ([] if variant else [stem, f"{stem}.fp16"])
    for name in dict.fromkeys(names):
        single = directory / f"{name}.safetensors"
        if single.is_file():
            return (single,)
        base, _, var = name.partition(".")
        index = directory / (f"{base}.safetensors.index.{var}.json" if var else
                             f"{base}.safetensors.index.json")  # fmt: skip
        if index.is_file():
            weight_map = _read_json(index, root).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise _refuse(root, f"{index.relative_to(root)} has no weight_map")
            files = tuple(directory / f for f in sorted(set(weight_map.values())))
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise _refuse(root, f"{directory.name}/ lacks the shards {missing[:3]}",
                              "download the whole checkpoint again")  # fmt: skip
            return (index, *files)
    where = directory.relative_to(root)
    if any(directory.glob("*.bin")):
        raise _refuse(
            root, f"{where}/ holds only pickled weights (.bin), which openimagen never loads",
            "download the .safetensors files of the checkpoint (or convert them)",
        )  # fmt: skip
    raise _refuse(root, f"{where}/ has no {stem}.safetensors", "download the whole checkpoint")


def read_if_checkpoint(
    path: str | os.PathLike, *, expected_stage: int, variant: str | None = None
) -> IFCheckpoint:
    """Check that ``path`` is a DeepFloyd IF checkpoint of stage ``expected_stage`` (1 or 2)."""
    root = Path(path)
    argument = "STAGE1_DIR" if expected_stage == 1 else "STAGE2_DIR"
    if not root.is_dir():
        raise _refuse(root, f"{argument} does not exist or is not a directory")
    index = _read_json(root / "model_index.json", root)
    pipeline = index.get("_class_name")
    if pipeline not in PIPELINES:
        raise _refuse(
            root, f"not a DeepFloyd IF checkpoint (model_index.json names {pipeline!r}, expected "
            f"one of {', '.join(PIPELINES)})", "pass IF stage directories (IF-I-*, IF-II-*)",
        )  # fmt: skip
    stage = PIPELINES[pipeline]
    unet = _read_json(root / "unet" / "config.json", root)
    if unet.get("_class_name") != "UNet2DConditionModel":
        raise _refuse(root, f"unet/config.json is a {unet.get('_class_name')!r}, not a "
                      "UNet2DConditionModel")  # fmt: skip
    # the U-Net must agree with the pipeline class: in_channels 3 (I) or 6 (II, x_t + low-res)
    unet_stage = 2 if unet.get("in_channels") == 6 else 1 if unet.get("in_channels") == 3 else 0
    if unet_stage != stage or (stage == 2) != (unet.get("class_embed_type") == "timestep"):
        raise _refuse(
            root, f"model_index.json says {pipeline} but unet/config.json has in_channels="
            f"{unet.get('in_channels')}, class_embed_type={unet.get('class_embed_type')!r}",
            "the checkpoint is inconsistent: download it again",
        )  # fmt: skip
    if stage != expected_stage:
        raise _refuse(
            root, f"is an IF {STAGE_NAMES[stage]} checkpoint, given as {argument} (stage "
            f"{'I' if expected_stage == 1 else 'II'})",
            "pass stage I first, then stage II: import-if STAGE1_DIR [STAGE2_DIR] OUT_DIR",
        )  # fmt: skip
    scheduler = _read_json(root / "scheduler" / "scheduler_config.json", root)
    noising = None
    if stage == 2:
        noising = _read_json(root / "image_noising_scheduler" / "scheduler_config.json", root)
    unet_files = _weight_files(root / "unet", "diffusion_pytorch_model", root, variant)
    text_files = tokenizer_files = None
    if (root / "text_encoder").is_dir():
        _read_json(root / "text_encoder" / "config.json", root)
        text_files = (root / "text_encoder" / "config.json",
                      *_weight_files(root / "text_encoder", "model", root, variant))  # fmt: skip
    tokenizer_dir = root / "tokenizer"
    if tokenizer_dir.is_dir() and any((tokenizer_dir / n).is_file() for n in _TOKENIZER_FILES):
        tokenizer_files = tuple(sorted(p for p in tokenizer_dir.iterdir() if p.is_file()))
    if stage == 1 and text_files is None:
        raise _refuse(root, "the stage I checkpoint has no text_encoder/ (T5)",
                      "download the whole IF-I checkpoint, text_encoder/ included")  # fmt: skip
    if text_files is not None and tokenizer_files is None:
        raise _refuse(
            root, "has a text_encoder/ but no tokenizer (tokenizer/ with spiece.model or "
            "tokenizer.json)", "download the checkpoint's tokenizer/ directory too",
        )  # fmt: skip
    upstream = tuple(sorted(p for p in root.iterdir() if p.is_file() and (
        p.name.upper().startswith(("LICENSE", "LICENCE")) or p.name == "README.md")))  # fmt: skip
    return IFCheckpoint(root, stage, pipeline, unet, scheduler, noising, unet_files,
                        text_files, tokenizer_files, upstream)  # fmt: skip


# -- the stage configs ------------------------------------------------------------------------
def _scheduler_settings(ckpt: IFCheckpoint) -> dict[str, Any]:
    """What openimagen takes from a DDPMScheduler config, refusing what it cannot reproduce."""
    s = ckpt.scheduler
    where = "scheduler/scheduler_config.json"
    if s.get("_class_name", "DDPMScheduler") != "DDPMScheduler":
        raise _refuse(ckpt.path, f"{where} is a {s.get('_class_name')!r}, expected DDPMScheduler")
    if s.get("trained_betas") is not None or s.get("rescale_betas_zero_snr"):
        raise _refuse(ckpt.path, f"{where}: trained_betas / rescale_betas_zero_snr are not "
                      "supported")  # fmt: skip
    beta = s.get("beta_schedule", "linear")
    if beta not in ("squaredcos_cap_v2", "linear") or (beta == "linear" and (
            s.get("beta_start", 1e-4), s.get("beta_end", 0.02)) != (1e-4, 0.02)):  # fmt: skip
        raise _refuse(ckpt.path, f"{where}: beta schedule {beta!r} is not supported "
                      "(squaredcos_cap_v2, or linear from 1e-4 to 0.02)")  # fmt: skip
    prediction = s.get("prediction_type", "epsilon")
    variance = s.get("variance_type", "fixed_small")
    if prediction not in _PREDICTIONS or variance not in ("learned_range", "fixed_small"):
        raise _refuse(ckpt.path, f"{where}: prediction_type {prediction!r} / variance_type "
                      f"{variance!r} is not supported")  # fmt: skip
    image_channels = 3
    out = ckpt.unet_config.get("out_channels")
    if out != (2 * image_channels if variance == "learned_range" else image_channels):
        raise _refuse(ckpt.path, f"unet out_channels={out} does not fit variance_type "
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
        raise _refuse(ckpt.path, f"cannot be read as an openimagen stage: {exc}") from exc
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
            raise _refuse(ckpt.path, f"{path.name} is not a readable safetensors file ({exc})")
    with torch.device("meta"):
        stage = Stage(config)
    expected = stage.unet.unet.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise _refuse(
            ckpt.path, f"the U-Net weights do not match unet/config.json ({len(missing)} missing "
            f"e.g. {missing[:2]}, {len(unexpected)} unexpected e.g. {unexpected[:2]}, "
            f"{len(wrong)} misshaped e.g. {wrong[:2]})", "download the checkpoint again",
        )  # fmt: skip
    stage.unet.unet.load_state_dict(tensors, assign=True)
    stage.unet.eval()
    return stage


# -- the text encoder -------------------------------------------------------------------------
def _text_config(ckpt: IFCheckpoint) -> dict[str, Any]:
    data = _read_json(ckpt.path / "text_encoder" / "config.json", ckpt.path)
    return {k: v for k, v in data.items()
            if not k.startswith("_") and k not in ("transformers_version", "torch_dtype", "dtype",
                                                   "architectures")}  # fmt: skip


def _check_same_text_encoder(first: IFCheckpoint, second: IFCheckpoint) -> None:
    """Both stages must be conditioned on the same T5: same config, tensors, sampled values."""
    from safetensors import safe_open

    def fail(what: str) -> ModelDirectoryError:
        return ModelDirectoryError(
            f"{second.path}: its text encoder differs from stage I's ({first.path}): {what}; "
            "the stages of a cascade must share one text encoder: pass matching IF checkpoints"
        )

    a, b = _text_config(first), _text_config(second)
    if a != b:
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise fail(f"text_encoder/config.json differs in {keys[:4]}")

    def open_all(ckpt: IFCheckpoint) -> dict[str, Any]:
        handles = {}
        for path in ckpt.text_encoder_files or ():
            if path.suffix == ".safetensors":
                handle = safe_open(path, framework="pt")
                handles.update({k: handle for k in handle.keys()})  # noqa: SIM118
        return handles

    ta, tb = open_all(first), open_all(second)
    if set(ta) != set(tb):
        raise fail(f"different tensors ({len(set(ta) ^ set(tb))} names differ)")
    names = sorted(ta)
    for name in dict.fromkeys([names[0], names[len(names) // 2], names[-1]]):
        x = ta[name].get_slice(name)
        y = tb[name].get_slice(name)
        if x.get_shape() != y.get_shape():
            raise fail(f"tensor {name} has shape {x.get_shape()} vs {y.get_shape()}")
        rows = x.get_shape()[0] if x.get_shape() else 0
        xs = (x[: min(rows, 8)] if rows else ta[name].get_tensor(name)).float()
        ys = (y[: min(rows, 8)] if rows else tb[name].get_tensor(name)).float()
        # an fp16 variant of the same weights differs by rounding only (relative 2**-11)
        if not torch.allclose(xs, ys, rtol=1e-2, atol=1e-4):
            raise fail(f"tensor {name} holds other values")
    if first.tokenizer_files and second.tokenizer_files:
        def digest(files: tuple[Path, ...]) -> dict[str, str]:
            return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files
                    if p.name in _TOKENIZER_FILES}  # fmt: skip

        da, db = digest(first.tokenizer_files), digest(second.tokenizer_files)
        if any(da[k] != db[k] for k in set(da) & set(db)):
            raise fail("the tokenizers' vocabularies differ")


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (no second copy of a 10 GB T5), else copy it."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _write_text_encoder(ckpt: IFCheckpoint, target: Path) -> None:
    """The T5 and its tokenizer in one directory, as ``HFTextEncoder`` loads it.

    A variant's files are renamed to the plain names transformers looks for. The tokenizer is
    loaded once (a sentencepiece-only one needs the ``sentencepiece`` package here) and saved
    as ``tokenizer.json`` too, so loading the model directory later needs no sentencepiece.
    """
    target.mkdir()
    for path in ckpt.text_encoder_files or ():
        name = path.name
        if name.startswith("model.") and ".fp16" in name:
            name = name.replace(".fp16", "")
            if name.endswith(".index.json"):  # its weight_map keeps naming the fp16 shards
                shutil.copy2(path, target / "model.safetensors.index.json")
                continue
        _link_or_copy(path, target / name)
    for path in ckpt.tokenizer_files or ():
        _link_or_copy(path, target / path.name)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(target), local_files_only=True)
    except Exception as exc:  # transformers raises many kinds here; one line says which
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise _refuse(
            ckpt.path, f"its tokenizer cannot be loaded ({reason})",
            "install sentencepiece (pip install 'openimagen[if]') for a tokenizer that has "
            "only spiece.model",
        ) from exc  # fmt: skip
    if not (target / "tokenizer.json").is_file():
        tokenizer.save_pretrained(str(target))


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
    if dtype != "auto" and dtype not in _DTYPES:
        raise ModelDirectoryError(f"--dtype={dtype!r}: expected auto, {', '.join(_DTYPES)}")
    if out.exists() and not overwrite:
        raise ModelDirectoryError(f"{out} already exists; choose another OUT_DIR or pass --overwrite")
    checkpoints = [read_if_checkpoint(stage1, expected_stage=1, variant=variant)]
    if stage2 is not None:
        checkpoints.append(read_if_checkpoint(stage2, expected_stage=2, variant=variant))
        if checkpoints[1].text_encoder_files is not None:
            _check_same_text_encoder(checkpoints[0], checkpoints[1])
    text_dim = int(_text_config(checkpoints[0]).get("d_model", 0))
    configs, sampling = [], []
    for ckpt in checkpoints:
        lowres = configs[-1].resolution if configs else None
        config, settings = _stage_config(ckpt, lowres)
        if config.unet.text_embed_dim != text_dim:
            raise _refuse(
                ckpt.path, f"its U-Net reads text embeddings of width {config.unet.text_embed_dim}"
                f" but stage I's T5 gives {text_dim}", "pass IF checkpoints that belong together",
            )  # fmt: skip
        configs.append(config)
        sampling.append(settings)
    stages = [_load_stage(c, cfg) for c, cfg in zip(checkpoints, configs, strict=True)]
    first = next(v for v in stages[0].unet.state_dict().values() if v.is_floating_point())
    store = first.dtype if dtype == "auto" else _DTYPES[dtype]

    def extra_files(staged: Path) -> None:
        _write_text_encoder(checkpoints[0], staged / TEXT_ENCODER_DIR)
        for i, (ckpt, config) in enumerate(zip(checkpoints, configs, strict=True)):
            _write_upstream(ckpt, staged / stage_dir_name(i, config))

    write_model_directory(
        out, stages, sampling, text_encoder=TEXT_ENCODER_DIR, text_max_length=IF_TEXT_MAX_LENGTH,
        dtype=store, overwrite=overwrite, text_conditioning="deepfloyd-if",
        extra_files=extra_files,
    )  # fmt: skip
    write_model_card(out)
    return out


__all__ = ["IF_DEFAULT_SAMPLING", "IFCheckpoint", "import_deepfloyd_if", "read_if_checkpoint"]
