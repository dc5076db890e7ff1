"""ShapeBench: exact text-image alignment scoring on the shapes world.

A prompt is a :class:`~openimagen.data.shapes.ShapeSpec`; a generated image is read back
with the weight-free detector (:mod:`openimagen.eval.detector`) and checked attribute by
attribute, in the spirit of GenEval (Ghosh et al., 2023) but exact:

* ``count``: as many objects as the spec lists (missing and extra objects are named);
* ``color``, ``shape``, ``size``: of each detected object matched to a spec object;
* ``relation``: every spatial relation holds between the matched objects' centroids by at
  least ``relation_tolerance`` of the image side;
* ``background``: when the spec states one.

Spec objects are matched to detections by the assignment that agrees on the most
attributes (shape first, then colour, then size), ties broken by the relations it
satisfies, so a wrong image is reported for what is actually wrong with it. Rates come
with 95% Wilson score intervals (Wilson, 1927).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from openimagen.config import iter_jsonl
from openimagen.data.shapes import (
    RELATIONS,
    SIZES,
    SPLITS,
    ShapeObject,
    ShapesConfig,
    ShapeSpec,
    caption,
    check_split,
    relation_holds,
)
from openimagen.errors import InvalidArgumentError
from openimagen.eval.detector import DetectedObject, Detection, detect
from openimagen.eval.stats import wilson_interval

ATTRIBUTES = ("count", "color", "shape", "size", "relation", "background")
CATEGORIES = ("single_object", "size", "counting", "two_objects", "relation", "group_relation")


@dataclasses.dataclass(frozen=True)
class ScoreResult:
    """The verdict on one image: per attribute True / False / None (not asked by the spec)."""

    attributes: dict[str, bool | None]
    reasons: dict[str, str]  # one line for every attribute that is False
    detection: Detection
    matching: tuple[tuple[int, int], ...]  # (spec object index, detected object index)

    @property
    def all_correct(self) -> bool:
        return all(v is not False for v in self.attributes.values())

    @property
    def reason(self) -> str:
        return "; ".join(f"{k}: {v}" for k, v in self.reasons.items())

    def to_dict(self) -> dict[str, Any]:
        return {
            "all_correct": self.all_correct,
            "attributes": dict(self.attributes),
            "reason": self.reason,
            "detection": self.detection.to_dict(),
            "matching": [list(p) for p in self.matching],
        }


def _agreement(obj: ShapeObject, det: DetectedObject) -> float:
    # shape outranks colour (1.01 vs 1.0) so that a swap of colours between two objects is
    # reported as wrong colours rather than wrong shapes
    score = 1.01 * (obj.shape == det.shape) + 1.0 * (obj.color == det.color)
    return score + (0.5 * (obj.size == det.size) if obj.size else 0.0)


def _relations_met(
    spec: ShapeSpec, dets: Sequence[DetectedObject], pairs: dict[int, int], tol: float
) -> int:
    met = 0
    for a, rel, b in spec.relations:
        if a in pairs and b in pairs:
            da, db = dets[pairs[a]], dets[pairs[b]]
            met += relation_holds(rel, (da.cx, da.cy), (db.cx, db.cy), tol)
    return met


def _match(spec: ShapeSpec, dets: Sequence[DetectedObject], tol: float) -> dict[int, int]:
    """Spec object index -> detection index, maximizing (attribute agreement, relations met)."""
    m, k = len(spec.objects), len(dets)
    score = np.array([[_agreement(o, d) for d in dets] for o in spec.objects]).reshape(m, k)
    if k > 7:  # a cluttered image: optimal assignment on attributes alone
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(-score)
        return {int(r): int(c) for r, c in zip(rows, cols, strict=True)}
    best, best_key = {}, (-1.0, -1)
    if k >= m:
        candidates = ({i: j for i, j in enumerate(p)} for p in itertools.permutations(range(k), m))
    else:
        candidates = ({i: j for j, i in enumerate(p)} for p in itertools.permutations(range(m), k))
    for pairs in candidates:
        key = (
            round(sum(score[i, j] for i, j in pairs.items()), 6),
            _relations_met(spec, dets, pairs, tol),
        )
        if key > best_key:
            best, best_key = pairs, key
    return best


def score_detection(
    detection: Detection, spec: ShapeSpec, *, relation_tolerance: float = 0.03
) -> ScoreResult:
    """Check a :class:`Detection` against ``spec`` (see the module docstring)."""
    dets = detection.objects
    pairs = _match(spec, dets, relation_tolerance)
    attrs: dict[str, bool | None] = {}
    reasons: dict[str, str] = {}

    def name(i: int) -> str:
        return f"{spec.objects[i].describe()} (object {i})"

    missing = [i for i in range(len(spec.objects)) if i not in pairs]
    extra = sorted(set(range(len(dets))) - set(pairs.values()))
    attrs["count"] = len(dets) == len(spec.objects)
    if not attrs["count"]:
        noun = "object" if len(dets) == 1 else "objects"
        text = f"found {len(dets)} {noun}, expected {len(spec.objects)}"
        if missing:
            text += "; missing: " + ", ".join(name(i) for i in missing)
        if extra:
            text += "; extra: " + ", ".join(dets[j].describe() for j in extra)
        reasons["count"] = text

    for attr in ("color", "shape", "size"):
        asked = [i for i in pairs if getattr(spec.objects[i], attr) is not None]
        if attr == "size" and not any(o.size for o in spec.objects):
            attrs[attr] = None
            continue
        wrong = [
            i for i in asked if getattr(dets[pairs[i]], attr) != getattr(spec.objects[i], attr)
        ]
        attrs[attr] = bool(asked) and not wrong
        if wrong:
            reasons[attr] = "; ".join(
                f"{name(i)} is {getattr(dets[pairs[i]], attr)}: {dets[pairs[i]].describe()}"
                for i in wrong
            )
        elif not asked:
            reasons[attr] = "no object to check: nothing matched the prompt's objects"

    if spec.relations:
        failures = []
        for a, rel, b in spec.relations:
            if a not in pairs or b not in pairs:
                lost = ", ".join(name(i) for i in (a, b) if i not in pairs)
                failures.append(f"{name(a)} {rel} {name(b)}: not found: {lost}")
                continue
            da, db = dets[pairs[a]], dets[pairs[b]]
            if not relation_holds(rel, (da.cx, da.cy), (db.cx, db.cy), relation_tolerance):
                failures.append(
                    f"{name(a)} at ({da.cx:.2f}, {da.cy:.2f}) is not {rel} "
                    f"{name(b)} at ({db.cx:.2f}, {db.cy:.2f})"
                )
        attrs["relation"] = not failures
        if failures:
            reasons["relation"] = "; ".join(failures)
    else:
        attrs["relation"] = None

    attrs["background"] = None
    if spec.background is not None:
        attrs["background"] = detection.background == spec.background
        if not attrs["background"]:
            reasons["background"] = f"is {detection.background}, expected {spec.background}"
    return ScoreResult(attrs, reasons, detection, tuple(sorted(pairs.items())))


def score_image(
    image: Any,
    spec: ShapeSpec,
    *,
    config: ShapesConfig | None = None,
    relation_tolerance: float = 0.03,
) -> ScoreResult:
    """Detect the objects in ``image`` ([3, H, W] in [-1, 1], PIL or uint8 array) and score them."""
    return score_detection(detect(image, config), spec, relation_tolerance=relation_tolerance)


def _rate(values: Iterable[bool | None]) -> dict[str, Any]:
    known = [v for v in values if v is not None]
    correct, total = sum(known), len(known)
    low, high = wilson_interval(correct, total)
    accuracy = correct / total if total else None
    return {"correct": correct, "total": total, "accuracy": accuracy, "ci95": [low, high]}


def summarize(
    results: Sequence[ScoreResult], categories: Sequence[str | None] | None = None
) -> dict[str, Any]:
    """All-correct rate and per-attribute accuracy (with 95% CIs), overall and per category."""

    def block(rs: Sequence[ScoreResult]) -> dict[str, Any]:
        return {
            "num_images": len(rs),
            "all_correct": _rate(r.all_correct for r in rs),
            "attributes": {a: _rate(r.attributes.get(a) for r in rs) for a in ATTRIBUTES},
        }

    out = block(results)
    if categories is not None:
        names = sorted({c for c in categories if c is not None})
        out["categories"] = {
            c: block([r for r, rc in zip(results, categories, strict=True) if rc == c])
            for c in names
        }
    return out


# -- prompt suites -----------------------------------------------------------------------------
def load_prompt_file(path: str | os.PathLike) -> list[ShapeSpec]:
    """Read a JSONL prompt file, one spec per line; errors name the line and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(
            "prompts", str(path), "a readable UTF-8 JSONL file", str(exc)
        ) from exc
    specs = []
    for where, data in iter_jsonl(text, str(path)):
        spec = ShapeSpec.from_dict(data, where=f"{where}: spec")
        if not spec.prompt.strip():
            raise InvalidArgumentError(
                f"{where}: spec.prompt", data.get("prompt"), "a non-empty string"
            )
        specs.append(spec)
    if not specs:
        raise InvalidArgumentError("prompts", str(path), "a JSONL file with at least one spec")
    return specs


def _builtin_spec(
    category: str, rng: np.random.Generator, config: ShapesConfig, split: str
) -> ShapeSpec:
    train = config.allowed_pairs("train")
    first_pool = config.allowed_pairs(split) if split == "heldout_compositions" else train

    def pick(pool: list[tuple[str, str]], avoid: tuple[str, str] | None = None) -> tuple[str, str]:
        options = [p for p in pool if avoid is None or (p[0] != avoid[0] and p[1] != avoid[1])]
        return options[int(rng.integers(len(options)))]

    color, shape = pick(first_pool)
    if category == "single_object":
        return ShapeSpec((ShapeObject(shape, color),), category=category)
    if category == "size":
        size = SIZES[int(rng.integers(len(SIZES)))]
        return ShapeSpec((ShapeObject(shape, color, size),), category=category)
    if category == "counting":
        count = int(rng.integers(2, 5))
        return ShapeSpec((ShapeObject(shape, color),) * count, category=category)
    color2, shape2 = pick(train, avoid=(color, shape))  # differs in colour and in shape
    objects = (ShapeObject(shape, color), ShapeObject(shape2, color2))
    if rng.random() < 0.5:
        objects = objects[::-1]
    if category == "two_objects":
        return ShapeSpec(objects, category=category)
    relation = RELATIONS[int(rng.integers(len(RELATIONS)))]
    if category == "relation":
        return ShapeSpec(objects, ((0, relation, 1),), category=category)
    # group_relation: a counted group (the first pick) in a relation to one other object,
    # "two red circles above a blue square"
    count = int(rng.integers(2, 4))
    group, other = ShapeObject(shape, color), ShapeObject(shape2, color2)
    relations = tuple((i, relation, count) for i in range(count))
    return ShapeSpec((group,) * count + (other,), relations, category=category)


def builtin_prompts(
    split: str = "train", n: int = 100, seed: int = 0, config: ShapesConfig | None = None
) -> list[ShapeSpec]:
    """``n`` ShapeBench prompts of ``split``, cycling through :data:`CATEGORIES`.

    ``heldout_compositions`` prompts each contain a colour-shape pair never seen in
    training; ``paraphrase`` prompts use templates and synonyms never seen in training.
    """
    check_split(split)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidArgumentError("n", n, "a positive integer")
    config = config or ShapesConfig()
    specs = []
    for i in range(n):
        rng = np.random.default_rng([seed, 1000 + SPLITS.index(split), i])
        spec = _builtin_spec(CATEGORIES[i % len(CATEGORIES)], rng, config, split)
        specs.append(spec.with_prompt(caption(spec, rng, split, config)))
    return specs


# -- running a model ---------------------------------------------------------------------------
GenerateFn = Callable[[list[str], list[int]], torch.Tensor]


def run_shapebench(
    generate_fn: GenerateFn,
    specs: Sequence[ShapeSpec],
    out_dir: str | os.PathLike,
    *,
    num_per_prompt: int = 4,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
    config: ShapesConfig | None = None,
    relation_tolerance: float = 0.03,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Generate ``num_per_prompt`` images per spec, score them, write report.json and index.html.

    ``generate_fn(prompts, seeds)`` returns [N, 3, H, W] in [-1, 1]; image k of prompt i uses
    seed ``seed + i * num_per_prompt + k``, so results do not depend on ``batch_size``.
    """
    from openimagen.eval.report import write_report
    from openimagen.images import save_png

    if not specs:
        raise InvalidArgumentError("specs", specs, "at least one prompt")
    for name, value in (("num_per_prompt", num_per_prompt), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(name, value, "a positive integer")
    out_dir = Path(out_dir)
    jobs = [(i, k) for i in range(len(specs)) for k in range(num_per_prompt)]
    rows: list[dict[str, Any]] = []
    results: list[ScoreResult] = []
    bar = tqdm(total=len(jobs), disable=not progress, desc="shapebench")
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        prompts = [specs[i].prompt for i, _ in chunk]
        seeds = [seed + i * num_per_prompt + k for i, k in chunk]
        images = generate_fn(prompts, seeds)  # [n, 3, H, W]
        if (
            not isinstance(images, torch.Tensor)
            or images.ndim != 4
            or images.shape[:2] != (len(chunk), 3)
        ):
            raise InvalidArgumentError(
                "generate_fn(...)",
                getattr(images, "shape", type(images)),
                f"a tensor [{len(chunk)}, 3, H, W]",
            )
        for (i, k), s, image in zip(chunk, seeds, images, strict=True):
            result = score_image(
                image, specs[i], config=config, relation_tolerance=relation_tolerance
            )
            relpath = f"images/{i:04d}_{k}.png"
            save_png(image, out_dir / relpath, {"prompt": specs[i].prompt, "seed": s})
            results.append(result)
            rows.append(
                {"prompt_index": i, "sample": k, "seed": s, "prompt": specs[i].prompt,
                 "category": specs[i].category, "spec": specs[i].to_dict(), "image": relpath,
                 **result.to_dict()}
            )  # fmt: skip
        bar.update(len(chunk))
    bar.close()
    report = {
        "benchmark": "shapebench",
        "settings": {
            "num_prompts": len(specs),
            "num_per_prompt": num_per_prompt,
            "seed": seed,
            "relation_tolerance": relation_tolerance,
            "resolution": list(images.shape[-2:]),
            **(settings or {}),
        },
        "summary": summarize(results, [specs[i].category for i, _ in jobs]),
        "results": rows,
    }
    write_report(out_dir, report)
    return report
