"""One DeepFloyd IF stage directory (the diffusers layout), read and checked.

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

:func:`read_if_checkpoint` reads only the JSON files and lists the weight files; no weights
are loaded and nothing is downloaded. Pickled weights (``.bin``) are never read. Every
refusal is one :class:`ModelDirectoryError` line naming the directory, what is wrong and the
fix (:func:`refuse`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from openimagen.errors import ModelDirectoryError

#: model_index.json's pipeline class -> IF stage
PIPELINES = {"IFPipeline": 1, "IFSuperResolutionPipeline": 2}
STAGE_NAMES = {1: "stage I (IFPipeline, 64x64 from text)",
               2: "stage II (IFSuperResolutionPipeline, 64 -> 256)"}  # fmt: skip
#: a tokenizer directory holds at least one of these
TOKENIZER_FILES = ("tokenizer.json", "spiece.model")


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
def refuse(path: Path, what: str, fix: str = "") -> ModelDirectoryError:
    """The one-line error about checkpoint ``path``: what is wrong; then the fix."""
    return ModelDirectoryError(f"{path}: {what}" + (f"; {fix}" if fix else ""))


def read_checkpoint_json(path: Path, root: Path) -> dict[str, Any]:
    """The JSON object at ``path`` inside checkpoint ``root``; a missing file means ``root``
    is not an IF checkpoint."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise refuse(
            root, f"not a DeepFloyd IF checkpoint in the diffusers layout ({path.relative_to(root)} "
            "is missing)", "pass a directory downloaded from huggingface.co/DeepFloyd",
        ) from None  # fmt: skip
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise refuse(root, f"{path.relative_to(root)} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise refuse(root, f"{path.relative_to(root)} is not a JSON object")
    return data


def weight_files(directory: Path, stem: str, root: Path, variant: str | None) -> tuple[Path, ...]:
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
            weight_map = read_checkpoint_json(index, root).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise refuse(root, f"{index.relative_to(root)} has no weight_map")
            files = tuple(directory / f for f in sorted(set(weight_map.values())))
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise refuse(root, f"{directory.name}/ lacks the shards {missing[:3]}",
                              "download the whole checkpoint again")  # fmt: skip
            return (index, *files)
    where = directory.relative_to(root)
    if any(directory.glob("*.bin")):
        raise refuse(
            root, f"{where}/ holds only pickled weights (.bin), which openimagen never loads",
            "download the .safetensors files of the checkpoint (or convert them)",
        )  # fmt: skip
    raise refuse(root, f"{where}/ has no {stem}.safetensors", "download the whole checkpoint")


def read_if_checkpoint(
    path: str | os.PathLike, *, expected_stage: int, variant: str | None = None
) -> IFCheckpoint:
    """Check that ``path`` is a DeepFloyd IF checkpoint of stage ``expected_stage`` (1 or 2)."""
    root = Path(path)
    argument = "STAGE1_DIR" if expected_stage == 1 else "STAGE2_DIR"
    if not root.is_dir():
        raise refuse(root, f"{argument} does not exist or is not a directory")
    index = read_checkpoint_json(root / "model_index.json", root)
    pipeline = index.get("_class_name")
    if pipeline not in PIPELINES:
        raise refuse(
            root, f"not a DeepFloyd IF checkpoint (model_index.json names {pipeline!r}, expected "
            f"one of {', '.join(PIPELINES)})", "pass IF stage directories (IF-I-*, IF-II-*)",
        )  # fmt: skip
    stage = PIPELINES[pipeline]
    unet = read_checkpoint_json(root / "unet" / "config.json", root)
    if unet.get("_class_name") != "UNet2DConditionModel":
        raise refuse(root, f"unet/config.json is a {unet.get('_class_name')!r}, not a "
                      "UNet2DConditionModel")  # fmt: skip
    # the U-Net must agree with the pipeline class: in_channels 3 (I) or 6 (II, x_t + low-res)
    unet_stage = 2 if unet.get("in_channels") == 6 else 1 if unet.get("in_channels") == 3 else 0
    if unet_stage != stage or (stage == 2) != (unet.get("class_embed_type") == "timestep"):
        raise refuse(
            root, f"model_index.json says {pipeline} but unet/config.json has in_channels="
            f"{unet.get('in_channels')}, class_embed_type={unet.get('class_embed_type')!r}",
            "the checkpoint is inconsistent: download it again",
        )  # fmt: skip
    if stage != expected_stage:
        raise refuse(
            root, f"is an IF {STAGE_NAMES[stage]} checkpoint, given as {argument} (stage "
            f"{'I' if expected_stage == 1 else 'II'})",
            "pass stage I first, then stage II: import-if STAGE1_DIR [STAGE2_DIR] OUT_DIR",
        )  # fmt: skip
    scheduler = read_checkpoint_json(root / "scheduler" / "scheduler_config.json", root)
    noising = None
    if stage == 2:
        noising = read_checkpoint_json(root / "image_noising_scheduler" / "scheduler_config.json", root)
    unet_files = weight_files(root / "unet", "diffusion_pytorch_model", root, variant)
    text_files = tokenizer_files = None
    if (root / "text_encoder").is_dir():
        read_checkpoint_json(root / "text_encoder" / "config.json", root)
        text_files = (root / "text_encoder" / "config.json",
                      *weight_files(root / "text_encoder", "model", root, variant))  # fmt: skip
    tokenizer_dir = root / "tokenizer"
    if tokenizer_dir.is_dir() and any((tokenizer_dir / n).is_file() for n in TOKENIZER_FILES):
        tokenizer_files = tuple(sorted(p for p in tokenizer_dir.iterdir() if p.is_file()))
    if stage == 1 and text_files is None:
        raise refuse(root, "the stage I checkpoint has no text_encoder/ (T5)",
                      "download the whole IF-I checkpoint, text_encoder/ included")  # fmt: skip
    if text_files is not None and tokenizer_files is None:
        raise refuse(
            root, "has a text_encoder/ but no tokenizer (tokenizer/ with spiece.model or "
            "tokenizer.json)", "download the checkpoint's tokenizer/ directory too",
        )  # fmt: skip
    upstream = tuple(sorted(p for p in root.iterdir() if p.is_file() and (
        p.name.upper().startswith(("LICENSE", "LICENCE")) or p.name == "README.md")))  # fmt: skip
    return IFCheckpoint(root, stage, pipeline, unet, scheduler, noising, unet_files,
                        text_files, tokenizer_files, upstream)  # fmt: skip



__all__ = [
    "PIPELINES",
    "STAGE_NAMES",
    "TOKENIZER_FILES",
    "IFCheckpoint",
    "read_checkpoint_json",
    "read_if_checkpoint",
    "refuse",
    "weight_files",
]
