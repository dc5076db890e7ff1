"""DrawBench runs: every model draws the same prompts with the same seeds, resumably.

The paper's protocol (Saharia et al., 2022, section 4.3): for each prompt, each model makes a
set of 8 images; raters compare the two sets side by side (:mod:`openimagen.eval.rating`).

A run directory holds::

    run.json                       the settings every image depends on (checked on resume)
    images/<model>/<iii>-<kk>.png  image kk of prompt iii (PNG with provenance chunks)
    logs/process-<rank>.jsonl      which process wrote which image
    manifest.jsonl                 one row per image: model, prompt, category, seed, path,
                                   sha256; written once every image exists

Image ``k`` of prompt ``i`` uses seed ``seed + i * SEED_STRIDE + k`` for every model, so the
models are compared on the same initial noise, and a seed does not depend on how many images
per prompt or which prompts a run asks for (a run can be grown later). Work is cut into
batches per model, always the same batches for the same arguments; batch ``b`` belongs to
process ``b mod num_processes`` (Accelerate's process index), so processes take disjoint
shares. A batch with every image on disk is skipped; in a batch with some images missing,
the whole batch is drawn again (identical batches give identical images) and only the
missing files are written, each atomically. An interrupted run therefore continues where it
stopped, and nothing already written is rewritten.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openimagen.cascade.sampling import MAX_SEED
from openimagen.errors import InvalidArgumentError
from openimagen.eval.prompts import Prompt, PromptSuite
from openimagen.fileio import atomic_write, atomic_write_json

logger = logging.getLogger(__name__)

RUN_FORMAT = "openimagen-drawbench-run"
RUN_VERSION = 1
RUN_FILE = "run.json"
MANIFEST_FILE = "manifest.jsonl"
# images per prompt are at most this many, so seeds of different prompts never overlap
SEED_STRIDE = 1000
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# a process waits this long for the others at the end of a run (their shares can differ)
BARRIER_TIMEOUT = datetime.timedelta(hours=24)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model of a run: its label (names its image folder and its votes) and directory."""

    label: str
    directory: Path

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """``NAME=DIR`` or ``DIR`` (label: the directory's name)."""
        label, sep, directory = text.partition("=")
        if not sep:
            label, directory = Path(text.rstrip("/")).name, text
        if not LABEL.match(label):
            raise InvalidArgumentError(
                "--model", text, "DIR or NAME=DIR, NAME being 1-64 of A-Z a-z 0-9 . _ - "
                "(starting with a letter or digit)",
                "Name the model explicitly: --model mymodel=path/to/dir.",
            )  # fmt: skip
        return cls(label, Path(directory))


@dataclasses.dataclass(frozen=True)
class ImageJob:
    """One image of a run."""

    model: str
    prompt: Prompt
    sample: int
    seed: int

    @property
    def path(self) -> str:
        """Path relative to the run directory."""
        return f"images/{self.model}/{self.prompt.index:03d}-{self.sample:02d}.png"

    def row(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "prompt_index": self.prompt.index,
            "prompt": self.prompt.text,
            "category": self.prompt.category,
            "sample": self.sample,
            "seed": self.seed,
            "path": self.path,
        }


def image_seed(seed: int, prompt_index: int, sample: int) -> int:
    """The seed of image ``sample`` of prompt ``prompt_index`` (the same for every model)."""
    return seed + prompt_index * SEED_STRIDE + sample


def plan(
    labels: Sequence[str], prompts: Sequence[Prompt], num_per_prompt: int, seed: int
) -> list[ImageJob]:
    """Every image of the run, model by model, prompt by prompt."""
    return [
        ImageJob(label, p, k, image_seed(seed, p.index, k))
        for label in labels
        for p in prompts
        for k in range(num_per_prompt)
    ]


def batches(jobs: Sequence[ImageJob], batch_size: int) -> list[list[ImageJob]]:
    """``jobs`` cut into batches of at most ``batch_size``, never mixing models."""
    out: list[list[ImageJob]] = []
    for label in dict.fromkeys(j.model for j in jobs):
        own = [j for j in jobs if j.model == label]
        out += [own[i : i + batch_size] for i in range(0, len(own), batch_size)]
    return out


def _check_positive(name: str, value: Any, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise InvalidArgumentError(name, value, f"an integer from 1 to {high}")


def model_identity(spec: ModelSpec, overrides: dict[str, Any], num_stages: int | None) -> dict:
    """What a model's images depend on: its cascade.json, stage configs and sampling."""
    from openimagen.cascade import read_cascade_config, read_stage_config

    config = read_cascade_config(spec.directory)
    stages = len(config.stages) if num_stages is None else num_stages
    if not 1 <= stages <= len(config.stages):
        raise InvalidArgumentError(
            "--stages", num_stages, f"an integer from 1 to {len(config.stages)} for {spec.label}"
        )
    entries = config.stages[:stages]
    return {
        "model_id": config.model_id or spec.directory.name,
        "text_encoder": config.text_encoder,
        "stages": [read_stage_config(spec.directory / e.path).to_dict() for e in entries],
        "sampling": [e.sampling.replace(**overrides).to_dict() for e in entries],
    }


def _merge_run(existing: dict | None, new: dict, out_dir: Path) -> dict:
    """``existing`` run.json extended by ``new``; refuses any change to what images depend on."""
    if existing is None:
        return new
    if existing.get("format") != RUN_FORMAT:
        raise InvalidArgumentError(
            "--out", str(out_dir), f"a new directory or a {RUN_FORMAT} run directory",
            f"{out_dir / RUN_FILE} is not a DrawBench run file; choose another --out.",
        )  # fmt: skip
    for key, option in (("prompts", "--prompts"), ("seed", "--seed")):
        if existing.get(key) != new[key]:
            raise InvalidArgumentError(
                option, new[key], f"what the run in {out_dir} used: {existing.get(key)}",
                "Resume with the same value, or choose another --out.",
            )  # fmt: skip
    models = dict(existing.get("models", {}))
    for label, identity in new["models"].items():
        if label in models and models[label] != identity:
            changed = sorted(k for k in identity if identity[k] != models[label].get(k))
            raise InvalidArgumentError(
                "--model", label, f"the model and settings this run used for {label!r}",
                f"Its {', '.join(changed)} changed since the images in {out_dir} were drawn; "
                "use the same model and sampling options, another NAME=DIR, or another --out.",
            )  # fmt: skip
        models[label] = identity
    return {**existing, "models": models}


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidArgumentError(
            "--out", str(path.parent), "a run directory with a readable run.json", f"{exc}."
        ) from exc


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_drawbench(
    models: Sequence[ModelSpec],
    suite: PromptSuite,
    out_dir: str | os.PathLike,
    *,
    num_prompts: int | None = None,
    num_per_prompt: int = 8,
    seed: int = 0,
    batch_size: int = 8,
    sampling_overrides: dict[str, Any] | None = None,
    num_stages: int | None = None,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Draw ``num_per_prompt`` images per prompt with every model (module docstring).

    Run once per process (``torchrun`` / ``accelerate launch`` start several); returns a
    summary ``{"manifest", "images", "written", "process", "num_processes"}``, ``manifest``
    being the manifest's path once this call saw every image written.
    """
    import torch
    from accelerate import PartialState

    out_dir = Path(out_dir)
    if not models:
        raise InvalidArgumentError("--model", [], "at least one model directory")
    labels = [m.label for m in models]
    if len(set(labels)) != len(labels):
        raise InvalidArgumentError(
            "--model", labels, "models with distinct names",
            "Two models have the same name; name them: --model a=DIR1 --model b=DIR2.",
        )  # fmt: skip
    _check_positive("--num-per-prompt", num_per_prompt, SEED_STRIDE)
    _check_positive("--batch-size", batch_size, 4096)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InvalidArgumentError("--seed", seed, f"an integer from 0 to {MAX_SEED}")
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidArgumentError("--out", str(out_dir), "a directory (new or a run's)")
    overrides = dict(sampling_overrides or {})
    prompts = suite.select(num_prompts)
    run = {
        "format": RUN_FORMAT,
        "version": RUN_VERSION,
        "prompts": {"count": len(suite.prompts), "sha256": suite.fingerprint()},
        "prompt_suite": {"name": suite.name, "source": suite.source},
        "seed": seed,
        "seed_stride": SEED_STRIDE,
        "models": {m.label: model_identity(m, overrides, num_stages) for m in models},
    }
    # every process checks for itself (so a refused resume fails everywhere, no process left
    # waiting), then one writes
    merged = _merge_run(_read_json(out_dir / RUN_FILE), run, out_dir)
    # Accelerate finds several CPU processes (gloo) only when told it is on the CPU
    on_cpu = device == "cpu" or not torch.cuda.is_available()
    state = PartialState(cpu=on_cpu, timeout=BARRIER_TIMEOUT)
    rank, world = state.process_index, state.num_processes
    state.wait_for_everyone()
    if state.is_main_process:
        atomic_write_json(out_dir / RUN_FILE, merged)
        for stale in out_dir.glob("images/*/.*.tmp"):  # left by a process that was killed
            stale.unlink(missing_ok=True)
    state.wait_for_everyone()

    jobs = plan(labels, prompts, num_per_prompt, seed)
    mine = [b for i, b in enumerate(batches(jobs, batch_size)) if i % world == rank]
    written = _draw_share(
        mine, {m.label: m for m in models}, out_dir, state, overrides, num_stages, device,
        progress,
    )  # fmt: skip
    state.wait_for_everyone()
    manifest = None
    if state.is_main_process:
        manifest = write_manifest(out_dir, jobs)
    return {"manifest": manifest, "images": len(jobs), "written": written, "process": rank,
            "num_processes": world}  # fmt: skip


def _draw_share(
    mine: list[list[ImageJob]],
    models: dict[str, ModelSpec],
    out_dir: Path,
    state: Any,
    overrides: dict[str, Any],
    num_stages: int | None,
    device: str | None,
    progress: bool,
) -> int:
    """Draw this process's batches that have missing images; returns the images written."""
    from tqdm.auto import tqdm

    rank, world = state.process_index, state.num_processes
    todo = [b for b in mine if any(not (out_dir / j.path).is_file() for j in b)]
    logger.info("process %d of %d: %d batches, %d to draw", rank, world, len(mine), len(todo))
    bar = tqdm(
        total=sum(len(b) for b in mine),
        initial=sum((out_dir / j.path).is_file() for b in mine for j in b),
        unit="image",
        desc=f"drawbench ({world} processes)" if world > 1 else "drawbench",
        disable=not (progress and state.is_main_process),
    )
    log_path = out_dir / "logs" / f"process-{rank}.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    written, loaded = 0, None  # loaded: (label, cascade), one model in memory at a time
    with open(log_path, "a", encoding="utf-8") as log:
        for batch in todo:
            label = batch[0].model
            if loaded is None or loaded[0] != label:
                loaded = None  # free the previous model before loading the next
                loaded = (label, _load(models[label], device, state.device))
            new = _draw_batch(loaded[1], batch, out_dir, overrides, num_stages)
            for job in new:
                log.write(json.dumps({"path": job.path, "process": rank, "of": world}) + "\n")
            log.flush()
            written += len(new)
            bar.update(len(new))
    bar.close()
    return written


def _load(spec: ModelSpec, device: str | None, process_device: Any) -> Any:
    import openimagen

    # "auto": the device Accelerate gave this process (cuda:<local rank>, or the CPU)
    return openimagen.load(
        spec.directory, device=process_device if device in (None, "auto") else device
    )


def _draw_batch(
    cascade: Any, batch: list[ImageJob], out_dir: Path, overrides: dict, num_stages: int | None
) -> list[ImageJob]:
    """Draw a whole batch (so its images equal an uninterrupted run's); write missing files."""
    from openimagen.images import provenance, save_png

    sampling = [s.replace(**overrides) for s in cascade.sampling]
    images = cascade.generate(
        [j.prompt.text for j in batch],
        [j.seed for j in batch],
        sampling=sampling,
        num_stages=num_stages,
    )  # [N, 3, R, R]
    used = sampling[: num_stages or len(sampling)]
    new = []
    for job, image in zip(batch, images, strict=True):
        path = out_dir / job.path
        if path.is_file():  # written before an interruption: never rewritten
            continue
        save_png(image, path, provenance(job.prompt.text, job.seed, cascade.model_id, used))
        new.append(job)
    return new


def write_manifest(out_dir: Path, jobs: Sequence[ImageJob]) -> Path:
    """manifest.jsonl: one row per image with its sha256; every image must exist."""
    missing = [j.path for j in jobs if not (out_dir / j.path).is_file()]
    if missing:
        raise InvalidArgumentError(
            "--out", str(out_dir), "a run whose images all exist",
            f"{len(missing)} images are missing (first: {missing[0]}); run the same command "
            "again to draw them.",
        )  # fmt: skip
    path = out_dir / MANIFEST_FILE
    with atomic_write(path, "w") as handle:
        for job in jobs:
            row = {**job.row(), "sha256": _sha256(out_dir / job.path)}
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    return path


def read_manifest(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a run's manifest.jsonl; errors say how to make one."""
    path = Path(run_dir) / MANIFEST_FILE
    if not path.is_file():
        raise InvalidArgumentError(
            "DIR", str(run_dir), f"a DrawBench run directory with {MANIFEST_FILE}",
            "Make one with: openimagen eval drawbench --model A --model B --out DIR "
            "(run it again if it was interrupted).",
        )  # fmt: skip
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InvalidArgumentError(f"{path} line {number}", line, "a JSON object") from exc
    return rows
