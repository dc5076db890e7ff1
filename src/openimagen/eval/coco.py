"""COCO zero-shot FID-30K and CLIP score (Saharia et al., 2022, section 4.1).

The paper's protocol: 30,000 prompts drawn at random from the COCO validation captions,
one image generated per prompt, and the generated images compared with the reference
images of the full validation set; samples at 256x256. Here:

1. **Draw** (:func:`openimagen.eval.coco_captions.draw_captions`): the images of ``captions_val2014.json`` that have a
   caption, in image-id order, are permuted by ``torch.randperm`` under ``caption_seed``;
   the first ``num`` are drawn and each gets one of its captions (chosen by a second draw
   from the same generator, by draw position). A draw of n is the first n of a draw of
   30,000 with the same seed. Captions have runs of white space collapsed to one space.
2. **Generate**: the drawn captions are written as ``captions.jsonl`` (one prompt each) and
   drawn by the DrawBench runner with one image per prompt (:mod:`openimagen.eval.drawbench`):
   the same seeds (``seed + 1000 * i``), resumable, split over processes, ``manifest.jsonl``.
3. **Prepare** (:func:`prepare_image`): generated and reference images alike are converted
   to RGB, cropped to their largest centred square (integer box) and resized to 256x256
   with PIL's bicubic filter (antialiased when shrinking), saved as PNG. The reference set
   is every image of the captions file (``reference="all"``, the paper's) or the drawn ones.
4. **Score** (:mod:`openimagen.eval.metrics`): FID between the two prepared folders through
   torch-fidelity, CLIP score of the prepared generated images against their captions
   through open_clip; ``results.json``.

A run directory holds ``coco.json`` (the draw and protocol, checked on resume),
``captions.jsonl``, the DrawBench runner's files (``run.json``, ``images/``,
``manifest.jsonl``), ``fid/generated/`` and ``fid/reference/`` (the prepared PNGs; kept, so a
rerun prepares only what is missing), and ``results.json``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openimagen.errors import InvalidArgumentError
from openimagen.eval.coco_captions import (
    CocoCaptions,
    CocoImage,
    DrawnCaption,
    draw_captions,
    read_coco_captions,
)
from openimagen.eval.drawbench import ModelSpec, read_manifest, run_drawbench
from openimagen.eval.metrics import (
    CLIP_SCORE_SCALE,
    FID_FEATURE_EXTRACTOR,
    FID_FEATURE_LAYER,
    check_file,
    check_inception_weights,
    clip_score,
    frechet_inception_distance,
    library_versions,
    require_eval_packages,
    resolve_clip_model,
    sha256_file,
)
from openimagen.eval.prompts import load_prompt_suite
from openimagen.fileio import atomic_write, atomic_write_json
from openimagen.version import __version__

logger = logging.getLogger(__name__)

RUN_FORMAT = "openimagen-coco-run"
RESULTS_FORMAT = "openimagen-coco-results"
RUN_VERSION = 1
RUN_FILE = "coco.json"
CAPTIONS_FILE = "captions.jsonl"
RESULTS_FILE = "results.json"
GENERATED_DIR = "fid/generated"
REFERENCE_DIR = "fid/reference"
PAPER_NUM = 30000
IMAGE_SIZE = 256
REFERENCES = ("all", "drawn")
PROTOCOL = {
    "image_size": IMAGE_SIZE,
    "crop": "largest centred square, integer box ((w - s) // 2, (h - s) // 2), s = min(w, h)",
    "resize": "after the crop, PIL Image.Resampling.BICUBIC to 256x256 (antialiased when shrinking)",
    "color": "RGB (PIL convert), EXIF orientation not applied",
    "file": "PNG, 8 bits per channel",
    "fid": {
        "library": "torch-fidelity",
        "feature_extractor": FID_FEATURE_EXTRACTOR,
        "feature_layer": FID_FEATURE_LAYER,
        "inside": "TensorFlow-1.x bilinear resize to 299x299, (x - 128) / 128",
    },
    "clip_score": {
        "library": "open_clip",
        "definition": f"{CLIP_SCORE_SCALE:g} * mean over pairs of max(cos(image, caption), 0)",
        "inside": "the model's own preprocessing (resize, centre crop, normalize) and tokenizer",
    },
}


def prepare_image(image: Any, size: int = IMAGE_SIZE) -> Any:
    """The protocol's image: RGB, largest centred square, bicubic to ``size`` x ``size`` (PIL)."""
    from PIL import Image

    image = image.convert("RGB")
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    # crop, then resize: the filter sees only the square (resize(box=...) would also read
    # the pixels beyond the box's edges)
    square = image.crop((left, top, left + side, top + side))
    return square.resize((size, size), Image.Resampling.BICUBIC)


def prepare_folder(pairs: Sequence[tuple[Path, Path]], *, desc: str, progress: bool = True) -> int:
    """Write ``prepare_image(source)`` to each missing ``target`` (atomically); returns the count."""
    from PIL import Image
    from tqdm.auto import tqdm

    for folder in {target.parent for _, target in pairs}:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".*.tmp"):  # left by a killed run
            stale.unlink(missing_ok=True)
    todo = [(source, target) for source, target in pairs if not target.is_file()]
    bar = tqdm(total=len(pairs), initial=len(pairs) - len(todo), unit="image", desc=desc,
               disable=not progress)  # fmt: skip
    for source, target in todo:
        with Image.open(source) as image:
            prepared = prepare_image(image)
        data = io.BytesIO()
        prepared.save(data, format="PNG")
        with atomic_write(target, "wb") as handle:
            handle.write(data.getvalue())
        bar.update(1)
    bar.close()
    return len(todo)


def _check_run(out_dir: Path, run: dict[str, Any]) -> None:
    """Refuse to resume a run directory whose draw or protocol differs from ``run``."""
    path = out_dir / RUN_FILE
    if not path.is_file():
        return
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidArgumentError("--out", str(out_dir), f"a run directory with a readable {RUN_FILE}", f"{exc}.") from exc  # fmt: skip
    if not isinstance(existing, dict) or existing.get("format") != RUN_FORMAT:
        raise InvalidArgumentError(
            "--out", str(out_dir), "a new directory or an `eval coco` run directory",
            f"{path} is not a {RUN_FORMAT} file; choose another --out.",
        )  # fmt: skip
    options = {"captions": "--captions", "num": "--num", "caption_seed": "--caption-seed",
               "seed": "--seed", "reference": "--reference", "model": "--model",
               "protocol": "(the protocol of this version)"}  # fmt: skip
    for key, option in options.items():
        if existing.get(key) != run[key]:
            raise InvalidArgumentError(
                option, run[key], f"what the run in {out_dir} used: {existing.get(key)}",
                "Resume with the same value, or choose another --out.",
            )  # fmt: skip


def _check_inputs(
    model: ModelSpec,
    captions_path: str | os.PathLike,
    images_dir: Path,
    out_dir: Path,
    *,
    num: int,
    caption_seed: int,
    reference: str,
    inception_weights: str | os.PathLike,
    clip_checkpoint: str | os.PathLike,
    clip_model: str,
) -> tuple[CocoCaptions, list[DrawnCaption], list[CocoImage | DrawnCaption], str]:
    """Every check that costs nothing, in the order a user fixes them; the draw and references."""
    from openimagen.cascade import read_cascade_config

    read_cascade_config(model.directory)  # a broken model directory is refused here, not later
    if reference not in REFERENCES:
        raise InvalidArgumentError("--reference", reference, f"one of {', '.join(REFERENCES)}")
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidArgumentError("--out", str(out_dir), "a directory (new or a run's)")
    if isinstance(num, int) and num < 2:  # draw_captions checks the rest
        raise InvalidArgumentError(
            "--num", num, "an integer >= 2", "FID needs the covariance of each image set."
        )
    captions = read_coco_captions(captions_path)
    drawn = draw_captions(captions, num, caption_seed)
    if not images_dir.is_dir():
        raise InvalidArgumentError(
            "--images", str(images_dir), "the folder of the captions file's images (val2014/)",
            "Unpack COCO's val2014.zip and pass the folder.",
        )  # fmt: skip
    # the reference images: the whole file's (the paper's), or the drawn ones in image-id order
    references: list[CocoImage | DrawnCaption] = (
        list(captions.images)
        if reference == "all"
        else sorted({d.image_id: d for d in drawn}.values(), key=lambda d: d.image_id)
    )
    missing = [r.file_name for r in references if not (images_dir / r.file_name).is_file()]
    if missing:
        raise InvalidArgumentError(
            "--images", str(images_dir), f"a folder holding the {len(references)} reference images",
            f"{len(missing)} are missing (first: {missing[0]}); pass the val2014/ folder of "
            f"the same COCO release as {captions.path.name}.",
        )  # fmt: skip
    check_inception_weights(inception_weights)
    check_file(
        "--clip-checkpoint", clip_checkpoint, "an open_clip checkpoint",
        "openimagen never downloads weights: fetch the file (docs/evaluation.md) and pass its path.",
    )  # fmt: skip
    require_eval_packages()
    return captions, drawn, references, resolve_clip_model(clip_model)


def _start_run(out_dir: Path, run: dict[str, Any], drawn: Sequence[DrawnCaption]) -> Path:
    """Check ``run`` against a run directory's, then write coco.json and the prompt file."""
    _check_run(out_dir, run)
    atomic_write_json(out_dir / RUN_FILE, run)
    captions_file = out_dir / CAPTIONS_FILE
    with atomic_write(captions_file, "w") as handle:  # the same bytes in every process
        for d in drawn:
            handle.write(json.dumps(d.row(), ensure_ascii=False, sort_keys=True) + "\n")
    return captions_file


def _prepare_run(
    out_dir: Path,
    images_dir: Path,
    references: Sequence[CocoImage | DrawnCaption],
    progress: bool,
) -> tuple[list[dict[str, Any]], list[Path]]:
    """The manifest's rows in prompt order, and the prepared files of the generated images."""
    rows = sorted(read_manifest(out_dir), key=lambda r: r["prompt_index"])
    generated_files = [out_dir / GENERATED_DIR / f"{r['prompt_index']:06d}.png" for r in rows]
    prepare_folder(
        [(out_dir / r["path"], target) for r, target in zip(rows, generated_files, strict=True)],
        desc="prepare generated", progress=progress,
    )  # fmt: skip
    prepare_folder(
        [(images_dir / r.file_name, out_dir / REFERENCE_DIR / (Path(r.file_name).stem + ".png"))
         for r in references],
        desc="prepare reference", progress=progress,
    )  # fmt: skip
    return rows, generated_files


def run_coco(
    model: ModelSpec,
    captions_path: str | os.PathLike,
    images_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    inception_weights: str | os.PathLike,
    clip_checkpoint: str | os.PathLike,
    clip_model: str = "ViT-L-14-quickgelu",
    num: int = PAPER_NUM,
    caption_seed: int = 0,
    seed: int = 0,
    reference: str = "all",
    batch_size: int = 8,
    metric_batch_size: int = 64,
    sampling_overrides: dict[str, Any] | None = None,
    num_stages: int | None = None,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any] | None:
    """Draw, generate, prepare and score (module docstring); returns results.json's content.

    Every check that needs no work runs first (files, the captions file's format, ``num``,
    the reference images, the libraries), so a mistake is reported before any image is
    drawn. Under several processes only the first scores; the others return None.
    """
    out_dir, images_dir = Path(out_dir), Path(images_dir)
    captions, drawn, references, clip_name = _check_inputs(
        model, captions_path, images_dir, out_dir, num=num, caption_seed=caption_seed,
        reference=reference, inception_weights=inception_weights,
        clip_checkpoint=clip_checkpoint, clip_model=clip_model,
    )  # fmt: skip
    run = {
        "format": RUN_FORMAT, "version": RUN_VERSION,
        "captions": {"file": captions.path.name, "sha256": captions.sha256,
                     "images": len(captions.images)},
        "num": num, "caption_seed": caption_seed, "seed": seed, "reference": reference,
        "model": model.label, "protocol": PROTOCOL,
    }  # fmt: skip
    captions_file = _start_run(out_dir, run, drawn)

    seconds, started = {}, time.monotonic()
    generated = run_drawbench(
        [model], load_prompt_suite(captions_file), out_dir, num_per_prompt=1, seed=seed,
        batch_size=batch_size, sampling_overrides=sampling_overrides, num_stages=num_stages,
        device=device, progress=progress,
    )  # fmt: skip
    if generated["manifest"] is None:  # not the first process
        return None
    seconds["generate"], started = time.monotonic() - started, time.monotonic()
    rows, generated_files = _prepare_run(out_dir, images_dir, references, progress)
    seconds["prepare"], started = time.monotonic() - started, time.monotonic()
    fid = frechet_inception_distance(
        out_dir / GENERATED_DIR, out_dir / REFERENCE_DIR, inception_weights, device=device,
        batch_size=metric_batch_size, progress=progress,
    )  # fmt: skip
    seconds["fid"], started = time.monotonic() - started, time.monotonic()
    score = clip_score(
        generated_files, [r["prompt"] for r in rows], model=clip_name, checkpoint=clip_checkpoint,
        device=device, batch_size=metric_batch_size, progress=progress,
    )  # fmt: skip
    seconds["clip_score"] = time.monotonic() - started
    results = {
        "format": RESULTS_FORMAT, "version": RUN_VERSION, "fid": fid, "clip_score": score,
        "num_generated": len(rows), "num_reference": len(references),
        **{k: run[k] for k in ("model", "captions", "caption_seed", "seed", "reference")},
        "model_dir": str(model.directory), "protocol": PROTOCOL,
        "inception_weights": {"file": Path(inception_weights).name,
                              "sha256": sha256_file(inception_weights)},
        "clip": {"model": clip_name, "model_argument": str(clip_model),
                 "checkpoint": Path(clip_checkpoint).name, "sha256": sha256_file(clip_checkpoint)},
        "software": {"openimagen": __version__, **library_versions()},
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }  # fmt: skip
    atomic_write_json(out_dir / RESULTS_FILE, results)
    return results


__all__ = [
    "CAPTIONS_FILE",
    "IMAGE_SIZE",
    "PAPER_NUM",
    "PROTOCOL",
    "REFERENCES",
    "RESULTS_FILE",
    "RUN_FILE",
    "GENERATED_DIR",
    "REFERENCE_DIR",
    "prepare_folder",
    "prepare_image",
    "run_coco",
]
