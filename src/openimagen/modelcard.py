"""Model cards: a README.md in every model directory, in the Hugging Face model-card layout.

The card is generated from plain files in the model directory, so it is always in step
with what is there:

* ``cascade.json`` and each stage's ``config.json``: stages, sizes, text encoder, sampling;
* each stage's ``training.json`` (written by ``openimagen export``): the training run's
  config, steps, images seen, training time;
* ``evaluation.json`` (written by ``openimagen eval shapebench --record``): ShapeBench
  results per split, with 95% intervals, from which the known failure modes are listed.

``write_model_card(directory)`` rewrites README.md (atomically) from those files; it is
called after every export and every recorded evaluation. ``openimagen info --model DIR``
prints it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from openimagen.cascade import (
    CARD_FILE,
    CASCADE_FILE,
    EVALUATION_FILE,
    TRAINING_FILE,
    UPSTREAM_DIR,
    read_cascade_config,
    read_stage_config,
)
from openimagen.errors import ModelDirectoryError
from openimagen.fileio import atomic_write, atomic_write_json
from openimagen.models.presets import count_parameters

# an attribute or category scoring under this all-correct rate is listed as a failure mode
FAILURE_THRESHOLD = 0.5


# -- the records the card is made from -------------------------------------------------------
def training_record(state: dict[str, Any], checkpoint: Path) -> dict[str, Any]:
    """What ``training.json`` holds for a stage exported from ``checkpoint``."""
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None
    record = {
        "checkpoint": str(checkpoint),
        "step": int(state.get("step", 0)),
        "images_seen": int(state.get("samples_seen", 0)),
        "config": state.get("config", {}),
        "exported": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    seconds = training_seconds(run_dir / "metrics.jsonl") if run_dir else None
    if seconds is not None:
        record["train_seconds"] = round(seconds, 1)
    return record


def training_seconds(metrics: Path, *, max_gap: float = 600.0) -> float | None:
    """Wall-clock training time from the ``time`` stamps of a run's metrics.jsonl.

    Gaps longer than ``max_gap`` seconds between logged steps are a run stopped and resumed
    later: they are counted as one typical interval, not as the pause.
    """
    try:
        lines = metrics.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    times = []
    for line in lines:
        try:
            value = json.loads(line).get("time")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(value, (int, float)):
            times.append(float(value))
    if len(times) < 2:
        return None
    gaps = [b - a for a, b in zip(times, times[1:], strict=False) if b >= a]
    typical = sorted(gaps)[len(gaps) // 2]
    return sum(g if g <= max_gap else typical for g in gaps) + typical  # + the first interval


def record_evaluation(directory: str | os.PathLike, split: str, report: dict[str, Any]) -> Path:
    """Store a ShapeBench report's summary for ``split`` in evaluation.json; rewrite the card."""
    directory = Path(directory)
    path = directory / EVALUATION_FILE
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    data[split] = {"settings": report.get("settings", {}), "summary": report["summary"]}
    atomic_write_json(path, data)
    return write_model_card(directory)


# -- the card ---------------------------------------------------------------------------------
def write_model_card(directory: str | os.PathLike) -> Path:
    """Regenerate ``README.md`` of a model directory from its files (see module docstring)."""
    directory = Path(directory)
    text = render_model_card(directory)
    with atomic_write(directory / CARD_FILE, "w") as handle:
        handle.write(text)
    return directory / CARD_FILE


def read_model_card(directory: str | os.PathLike) -> str:
    path = Path(directory) / CARD_FILE
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelDirectoryError(
            f"{path}: no model card ({exc.strerror or exc}); `openimagen export` writes one"
        ) from exc


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _pct(rate: dict[str, Any] | None) -> str:
    if not rate or rate.get("accuracy") is None:
        return "-"
    low, high = rate["ci95"]
    return f"{100 * rate['accuracy']:.1f}% [{100 * low:.0f}, {100 * high:.0f}]"


def render_model_card(directory: Path) -> str:
    if not (directory / CASCADE_FILE).is_file():
        raise ModelDirectoryError(f"{directory}: not a model directory ({CASCADE_FILE} missing)")
    cascade = read_cascade_config(directory)
    stages = [(e, read_stage_config(directory / e.path)) for e in cascade.stages]
    trainings = [_read_json(directory / e.path / TRAINING_FILE) for e, _ in stages]
    evaluation = _read_json(directory / EVALUATION_FILE) or {}
    data_sources = {(t or {}).get("config", {}).get("data", {}).get("source") for t in trainings}
    shapes = data_sources == {"shapes"}
    name = cascade.model_id or directory.name
    final = stages[-1][1].resolution
    imported = [_upstream(directory, e.path, c) for e, c in stages]

    out = [
        "---",
        # imported weights keep their own licence (<stage>/upstream/), not openimagen's
        "license: " + ("other" if any(imported) else "apache-2.0"),
        "library_name: openimagen",
        "pipeline_tag: text-to-image",
        "tags:",
        *(f"- {t}" for t in ("openimagen", "imagen", "diffusion", "cascade")),
        *(["- shapes-world"] if shapes else []),
        "---",
        "",
        f"# {name}",
        "",
        f"An openimagen cascade of {len(stages)} stage(s) drawing {final}x{final} images, "
        f"conditioned on the frozen text encoder `{cascade.text_encoder}` "
        f"({cascade.text_max_length} tokens). This card is generated from the files in this "
        "directory (`openimagen.modelcard`).",
        "",
        "## Intended use",
        "",
    ]
    out += _intended_use_lines(shapes, data_sources, imported)
    out += ["", "## Stages", "",
            "| stage | resolution | parameters | sampling defaults |", "|---|---|---|---|"]  # fmt: skip
    for entry, config in stages:
        res = f"{config.lowres_resolution} -> {config.resolution}" if config.lowres_resolution \
            else f"{config.resolution}"  # fmt: skip
        s = entry.sampling
        sampling = (f"{s.sampler} {s.steps} steps, guidance {s.guidance_weight:g}, "
                    f"{s.threshold} thresholding")  # fmt: skip
        if config.unet.super_resolution:
            sampling += f", noise aug {s.noise_aug_level:g}"
        params = count_parameters(config.unet) / 1e6
        out.append(f"| `{entry.path}` | {res} | {params:.2f}M | {sampling} |")
    out += ["", "## Training data", ""]
    for (entry, _), training, source in zip(stages, trainings, imported, strict=True):
        out.append(f"- `{entry.path}`: " + (source or _data_line(training)))
    out += ["", "## Training procedure and budget", ""]
    for (entry, _), training, source in zip(stages, trainings, imported, strict=True):
        out.append(f"- `{entry.path}`: " + (source or _budget_line(training)))
    out += ["", "## Evaluation (ShapeBench)", ""]
    out += _evaluation_lines(evaluation)
    out += ["", "## Known failure modes", ""]
    out += _failure_lines(evaluation, shapes)
    out += [
        "",
        "## How to use",
        "",
        "```bash",
        f'openimagen generate "two red circles above a blue square" --model {directory.name} '
        "-n 4 --out out.png",
        f"openimagen eval shapebench --model {directory.name} --split paraphrase",
        "```",
        "",
    ]
    return "\n".join(out)


def _upstream(directory: Path, path: str, config: Any) -> str | None:
    """For a stage imported from another project (it has ``upstream/``): where it came from
    and where its own licence and model card are; None for openimagen's own stages."""
    upstream = directory / path / UPSTREAM_DIR
    if not upstream.is_dir():
        return None
    files = ", ".join(f"`{path}/{UPSTREAM_DIR}/{p.name}`" for p in sorted(upstream.iterdir()))
    source = getattr(config, "source", "") or "another project's checkpoint"
    return f"imported: {source}; its licence and model card: {files or 'none were found'}"


def _intended_use_lines(
    shapes: bool, data_sources: set[Any], imported: list[str | None]
) -> list[str]:
    if any(imported):
        return [
            "Stages imported from another project's weights; those weights are under their "
            "own licence, which binds every use of this directory (including its images): "
            "read the licence and model card each imported stage carries (Training data "
            "below). openimagen's Apache-2.0 licence covers its code, not these weights.",
        ]
    if shapes:
        return [
            "Research, teaching and testing: drawing scenes of openimagen's shapes world (one "
            "to four circles, squares and triangles in six colours, two sizes, on a plain "
            "background, with spatial relations) from English prompts, and measuring "
            "text-image alignment exactly with ShapeBench. It is not a general image "
            "generator: prompts about anything else give shapes-world scenes or noise.",
        ]
    sources = ", ".join(sorted(str(s) for s in data_sources if s)) or "unrecorded"
    return [f"Trained on the user's own data (source: {sources}); see Training data."]


def _data_line(training: dict[str, Any] | None) -> str:
    if not training:
        return "not recorded (exported before openimagen wrote training.json)"
    data = training.get("config", {}).get("data", {})
    source = data.get("source", "?")
    if source != "shapes":
        return f"{source} `{data.get('path', '')}`"
    from openimagen.data.shapes import ShapesConfig

    try:
        world = ShapesConfig.from_dict({**data.get("shapes", {}), "seed": data.get("seed", 0)})
    except Exception as exc:  # a record from another version: say so, do not fail the card
        return f"the shapes world (config not readable by this version: {exc})"
    mix = ", ".join(f"{k} {v:g}" for k, v in world.mix.items())
    held = ", ".join(f"{c} {s}" for c, s in world.heldout_pairs) or "none"
    words = sum(len(v) for v in world.train_language.words.values())
    return (f"the shapes world, split `{data.get('split', 'train')}`, seed {data.get('seed', 0)}; "
            f"scene mix {mix}; held-out colour-shape pairs (never in training): {held}; "
            f"training language: {words} phrases for {len(world.train_language.words)} "
            "concepts (docs/shapebench.md)")  # fmt: skip


def _budget_line(training: dict[str, Any] | None) -> str:
    if not training:
        return "not recorded"
    config = training.get("config", {})
    train, optim = config.get("train", {}), config.get("optim", {})
    parts = [
        f"{training.get('step', 0):,} steps of batch {train.get('batch_size', '?')} "
        f"({training.get('images_seen', 0):,} images)",
        f"{optim.get('name', '?')} lr {optim.get('lr', '?')} (warm-up {optim.get('warmup_steps', 0)})",
        f"precision {train.get('mixed_precision', 'no')}",
        f"text dropout {train.get('text_dropout', '?')}",
        f"EMA {train.get('ema_decay', '?')}",
    ]
    if train.get("min_snr_gamma"):
        parts.append(f"min-SNR-{train['min_snr_gamma']:g}")
    if "train_seconds" in training:
        parts.append(f"{training['train_seconds'] / 3600:.2f} h of training wall time")
    parts.append(f"exported {training.get('exported', '?')} from `{training.get('checkpoint')}`")
    if training.get("note"):
        parts.append(str(training["note"]))
    return "; ".join(parts)


def _evaluation_lines(evaluation: dict[str, Any]) -> list[str]:
    if not evaluation:
        return ["Not evaluated yet: `openimagen eval shapebench --model DIR --record` adds "
                "results here."]  # fmt: skip
    lines = ["All-correct rate and per-attribute accuracy, 95% Wilson intervals.", "",
             "| split | images | all-correct | colour | shape | count | size | relation |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for split, entry in evaluation.items():
        summary = entry["summary"]
        attrs = summary["attributes"]
        cells = [_pct(attrs.get(a)) for a in ("color", "shape", "count", "size", "relation")]
        lines.append(f"| {split} | {summary['num_images']} | {_pct(summary['all_correct'])} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    lines += ["", "Per category (all-correct):", "",
              "| split | " + " | ".join(_categories(evaluation)) + " |",
              "|---|" + "---|" * len(_categories(evaluation))]  # fmt: skip
    for split, entry in evaluation.items():
        cats = entry["summary"].get("categories", {})
        lines.append(f"| {split} | " + " | ".join(
            _pct(cats.get(c, {}).get("all_correct")) for c in _categories(evaluation)) + " |")  # fmt: skip
    settings = {s: e.get("settings", {}) for s, e in evaluation.items()}
    lines += ["", "Settings: " + "; ".join(
        f"{s}: {v.get('num_prompts', '?')} prompts x {v.get('num_per_prompt', '?')} images, "
        f"seed {v.get('seed', '?')}, {v.get('stages', 'all')} stage(s)" for s, v in settings.items())]  # fmt: skip
    return lines


def _categories(evaluation: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for entry in evaluation.values():
        for c in entry["summary"].get("categories", {}):
            if c not in names:
                names.append(c)
    return names


def _failure_lines(evaluation: dict[str, Any], shapes: bool) -> list[str]:
    lines = []
    for split, entry in evaluation.items():
        summary = entry["summary"]
        for c, block in summary.get("categories", {}).items():
            rate = block["all_correct"]
            if rate.get("accuracy") is not None and rate["accuracy"] < FAILURE_THRESHOLD:
                lines.append(f"- {split}, {c.replace('_', ' ')} prompts: all-correct "
                             f"{_pct(rate)}")  # fmt: skip
        for a, rate in summary["attributes"].items():
            if rate.get("accuracy") is not None and rate["accuracy"] < FAILURE_THRESHOLD:
                lines.append(f"- {split}: {a} right in only {_pct(rate)} of images")
    if not evaluation:
        lines.append("- Unknown until evaluated (see Evaluation).")
    if shapes:
        lines.append("- Anything outside the shapes world (other objects, photos, text in "
                     "images, more than four objects) is out of domain.")  # fmt: skip
    return lines


__all__ = [
    "CARD_FILE",
    "EVALUATION_FILE",
    "TRAINING_FILE",
    "read_model_card",
    "record_evaluation",
    "render_model_card",
    "training_record",
    "training_seconds",
    "write_model_card",
]
