"""The shapes world: procedurally rendered scenes of coloured shapes with an exact spec.

It is openimagen's embedded data set and the ground truth of ShapeBench
(``openimagen.eval.shapebench``). A scene has 1 to 4 objects (circle, square or upright
triangle; one of six colours; small or large) on a plain background, optionally with
spatial relations between objects. Everything is defined in normalized coordinates
(x right, y down, both in [0, 1]), so one seed gives the same scene at every resolution,
which the super-resolution stages of the cascade rely on.

Three splits share one config (the split definition is part of :class:`ShapesConfig`):

* ``train``: colour-shape pairs outside ``heldout_pairs``, captions from the training
  templates and synonyms;
* ``heldout_compositions``: every scene contains at least one held-out colour-shape pair,
  captions from the training vocabulary (only the composition is new);
* ``paraphrase``: training compositions, captions from templates and synonyms never used
  in training.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from openimagen.config import Config
from openimagen.errors import ConfigError, InvalidArgumentError

# -- the world's vocabulary ------------------------------------------------------------------
# sRGB values chosen so that every pair (object-object and object-background) is at least
# ~85/255 apart: the detector classifies colours by nearest neighbour.
OBJECT_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (40, 80, 235),
    "yellow": (245, 215, 20),
    "purple": (145, 50, 200),
    "orange": (250, 130, 0),
}
BACKGROUND_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "gray": (110, 110, 110),
}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
RELATIONS = ("left_of", "right_of", "above", "below")
INVERSE_RELATION = {
    "left_of": "right_of",
    "right_of": "left_of",
    "above": "below",
    "below": "above",
}
SPLITS = ("train", "heldout_compositions", "paraphrase")
MAX_OBJECTS = 4

# Area of a shape of "radius" r (half its bounding-box side) is AREA_FACTOR[shape] * r**2.
AREA_FACTOR = {"circle": math.pi, "square": 4.0, "triangle": 2.0}

_TRAIN_VOCAB: dict[str, tuple[str, ...]] = {
    "red": ("red",), "green": ("green",), "blue": ("blue",), "yellow": ("yellow",),
    "purple": ("purple",), "orange": ("orange",),
    "black": ("black",), "white": ("white",), "gray": ("gray", "grey"),
    "circle": ("circle", "disk"), "square": ("square", "box"),
    "triangle": ("triangle", "triangular shape"),
    "small": ("small", "little"), "large": ("large", "big"),
    "left_of": ("to the left of", "left of"), "right_of": ("to the right of", "right of"),
    "above": ("above", "over"), "below": ("below", "under"),
    "2": ("two",), "3": ("three",), "4": ("four",),
}  # fmt: skip
_PARAPHRASE_VOCAB: dict[str, tuple[str, ...]] = {
    "red": ("crimson", "scarlet"), "green": ("emerald",), "blue": ("cobalt", "azure"),
    "yellow": ("lemon", "golden"), "purple": ("violet",), "orange": ("tangerine", "amber"),
    "black": ("jet-black", "dark"), "white": ("snow-white",), "gray": ("slate", "ash"),
    "circle": ("disc", "round shape"), "square": ("tile", "block"),
    "triangle": ("wedge", "three-sided shape"),
    "small": ("tiny", "miniature"), "large": ("huge", "giant"),
    "left_of": ("on the left side of", "further left than"),
    "right_of": ("on the right side of", "further right than"),
    "above": ("higher up than", "on top of"), "below": ("lower down than", "beneath"),
    "2": ("2", "a pair of"), "3": ("3",), "4": ("4",),
}  # fmt: skip
_TRAIN_TEMPLATES = (
    "{objects}",
    "a picture of {objects}",
    "an image showing {objects}",
    "{objects} on a {background} background",
    "a {background} background with {objects}",
)
_PARAPHRASE_TEMPLATES = (
    "a rendering that contains {objects}",
    "here we see {objects}",
    "{objects}, drawn against a {background} backdrop",
    "a {background} canvas holding {objects}",
)


@dataclasses.dataclass(frozen=True)
class ShapesConfig(Config):
    """Everything that defines the shapes world and its splits (JSON/TOML round-trips)."""

    colors: tuple[str, ...] = tuple(OBJECT_COLORS)
    shapes: tuple[str, ...] = SHAPES
    backgrounds: tuple[str, ...] = tuple(BACKGROUND_COLORS)
    min_objects: int = 1
    max_objects: int = MAX_OBJECTS
    # Geometry in normalized units (fraction of the image side). At 32x32 a small object
    # spans ~6 px and a large one ~10 px, so both are visible and clearly distinct.
    small_radius: float = 0.09
    large_radius: float = 0.16
    radius_jitter: float = 0.06  # relative, uniform in [-j, j]
    min_gap: float = 0.05  # between bounding boxes
    border: float = 0.02  # between a bounding box and the image edge
    relation_margin: float = 0.12  # rendered relations hold with this centre offset
    # How the training specs are drawn.
    p_size: float = 0.5  # an object's size is stated in the caption
    p_background: float = 0.3  # the background colour is stated in the caption
    p_relation: float = 0.5  # a two-object scene gets a spatial relation
    p_repeat: float = 0.25  # a multi-object scene is N copies of one object (counting)
    # The split definition.
    heldout_pairs: tuple[tuple[str, str], ...] = (
        ("red", "triangle"),
        ("blue", "circle"),
        ("yellow", "square"),
    )
    train_vocab: dict[str, tuple[str, ...]] = dataclasses.field(
        default_factory=lambda: dict(_TRAIN_VOCAB)
    )
    paraphrase_vocab: dict[str, tuple[str, ...]] = dataclasses.field(
        default_factory=lambda: dict(_PARAPHRASE_VOCAB)
    )
    train_templates: tuple[str, ...] = _TRAIN_TEMPLATES
    paraphrase_templates: tuple[str, ...] = _PARAPHRASE_TEMPLATES
    seed: int = 0

    def validate(self) -> None:
        for name, values, known in (
            ("colors", self.colors, OBJECT_COLORS),
            ("shapes", self.shapes, SHAPES),
            ("backgrounds", self.backgrounds, BACKGROUND_COLORS),
        ):
            if not values or any(v not in known for v in values):
                raise ConfigError(
                    f"{name}: {values!r} must be a non-empty subset of {tuple(known)}"
                )
        if not 1 <= self.min_objects <= self.max_objects <= MAX_OBJECTS:
            raise ConfigError(
                f"min_objects={self.min_objects}, max_objects={self.max_objects}: "
                f"need 1 <= min_objects <= max_objects <= {MAX_OBJECTS}"
            )
        if not 0 < self.small_radius < self.large_radius <= 0.25:
            raise ConfigError("small_radius, large_radius: need 0 < small < large <= 0.25")
        if self.small_radius * (1 + self.radius_jitter) >= self.large_radius * (
            1 - self.radius_jitter
        ):
            raise ConfigError("radius_jitter: small and large radii ranges overlap")
        for name in ("p_size", "p_background", "p_relation", "p_repeat"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name}={getattr(self, name)} must be in [0, 1]")
        for color, shape in self.heldout_pairs:
            if color not in self.colors or shape not in self.shapes:
                raise ConfigError(
                    f"heldout_pairs: ({color!r}, {shape!r}) is not a colour-shape pair"
                )
        allowed = self.allowed_pairs("train")
        if {c for c, _ in allowed} != set(self.colors) or {s for _, s in allowed} != set(
            self.shapes
        ):
            raise ConfigError("heldout_pairs: every colour and every shape must remain in train")
        keys = [*self.colors, *self.shapes, *self.backgrounds, *SIZES, *RELATIONS, "2", "3", "4"]
        for name in ("train_vocab", "paraphrase_vocab"):
            vocab = getattr(self, name)
            missing = [k for k in keys if not vocab.get(k)]
            if missing:
                raise ConfigError(f"{name}: no words for {missing}")
        for key in keys:
            shared = set(self.train_vocab[key]) & set(self.paraphrase_vocab[key])
            if shared:
                raise ConfigError(f"paraphrase_vocab.{key}: {sorted(shared)} also in train_vocab")
        for name in ("train_templates", "paraphrase_templates"):
            templates = getattr(self, name)
            if not all("{objects}" in t for t in templates):
                raise ConfigError(f"{name}: every template needs an '{{objects}}' placeholder")
            if not any("{background}" in t for t in templates) or all(
                "{background}" in t for t in templates
            ):
                raise ConfigError(f"{name}: need templates with and without '{{background}}'")
        if set(self.train_templates) & set(self.paraphrase_templates):
            raise ConfigError("paraphrase_templates: shares templates with train_templates")

    def allowed_pairs(self, split: str) -> list[tuple[str, str]]:
        """Colour-shape pairs that may appear in ``split`` (held-out pairs only in their split)."""
        held = set(map(tuple, self.heldout_pairs))
        pairs = [(c, s) for c in self.colors for s in self.shapes]
        if split == "heldout_compositions":
            return [p for p in pairs if p in held]
        return [p for p in pairs if p not in held]

    def radius(self, size: str) -> float:
        return self.small_radius if size == "small" else self.large_radius


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise InvalidArgumentError("split", split, f"one of {', '.join(SPLITS)}")
    return split


# -- specs -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ShapeObject:
    shape: str
    color: str
    size: str | None = None  # None: not specified by the prompt

    def describe(self) -> str:
        return " ".join(w for w in (self.size, self.color, self.shape) if w)


@dataclasses.dataclass(frozen=True)
class ShapeSpec:
    """A scene as a prompt asks for it (no positions): the JSON line of a prompt file.

    ``relations`` holds ``(subject_index, relation, object_index)``, e.g. ``(0, "left_of", 1)``.
    ``category`` tags ShapeBench prompts (single_object, counting, relation, ...).
    """

    objects: tuple[ShapeObject, ...]
    relations: tuple[tuple[int, str, int], ...] = ()
    background: str | None = None
    prompt: str = ""
    category: str | None = None

    def __post_init__(self) -> None:
        # Re-validate through the JSON path so that hand-built specs get the same errors.
        _validate_spec_fields(self.to_dict(), "spec")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt": self.prompt,
            "objects": [dataclasses.asdict(o) for o in self.objects],
            "relations": [list(r) for r in self.relations],
            "background": self.background,
        }
        if self.category is not None:
            out["category"] = self.category
        return out

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "spec") -> ShapeSpec:
        """Parse the JSON form; errors are :class:`InvalidArgumentError` naming ``where.field``."""
        _validate_spec_fields(data, where)
        objects = tuple(ShapeObject(o["shape"], o["color"], o.get("size")) for o in data["objects"])
        relations = tuple((int(a), str(r), int(b)) for a, r, b in data.get("relations") or ())
        return cls(
            objects, relations, data.get("background"), data.get("prompt", ""), data.get("category")
        )

    def with_prompt(self, prompt: str) -> ShapeSpec:
        return dataclasses.replace(self, prompt=prompt)


_SPEC_KEYS = ("prompt", "objects", "relations", "background", "category")


def _validate_spec_fields(data: Any, where: str) -> None:
    def bad(field: str, value: Any, allowed: str, fix: str | None = None) -> InvalidArgumentError:
        return InvalidArgumentError(f"{where}.{field}" if field else where, value, allowed, fix)

    if not isinstance(data, Mapping):
        raise bad("", data, "a JSON object with keys " + ", ".join(_SPEC_KEYS))
    for key in data:
        if key not in _SPEC_KEYS:
            raise bad(key, data[key], "no such field; allowed: " + ", ".join(_SPEC_KEYS))
    for key in ("prompt", "category"):
        if not isinstance(data.get(key) or "", str):
            raise bad(key, data[key], "a string")
    objects = data.get("objects")
    if not isinstance(objects, (list, tuple)) or not 1 <= len(objects) <= MAX_OBJECTS:
        raise bad("objects", objects, f"a list of 1 to {MAX_OBJECTS} objects")
    for i, obj in enumerate(objects):
        if not isinstance(obj, Mapping):
            raise bad(f"objects[{i}]", obj, 'an object like {"shape": "circle", "color": "red"}')
        for key in obj:
            if key not in ("shape", "color", "size"):
                raise bad(
                    f"objects[{i}].{key}", obj[key], "no such field; allowed: shape, color, size"
                )
        for key, allowed, optional in (
            ("shape", SHAPES, False),
            ("color", tuple(OBJECT_COLORS), False),
            ("size", SIZES, True),
        ):
            value = obj.get(key)
            if not (value in allowed or (optional and value is None)):
                extra = " or null" if optional else ""
                raise bad(f"objects[{i}].{key}", value, f"one of {', '.join(allowed)}{extra}")
    relations = data.get("relations") or []
    if not isinstance(relations, (list, tuple)):
        raise bad("relations", relations, 'a list like [[0, "left_of", 1]]')
    for k, rel in enumerate(relations):
        if not isinstance(rel, (list, tuple)) or len(rel) != 3:
            raise bad(f"relations[{k}]", rel, 'a triple like [0, "left_of", 1]')
        for pos in (0, 2):
            index = rel[pos]
            if (
                isinstance(index, bool)
                or not isinstance(index, int)
                or not 0 <= index < len(objects)
            ):
                raise bad(
                    f"relations[{k}][{pos}]", index, f"an object index in 0..{len(objects) - 1}"
                )
        if rel[1] not in RELATIONS:
            raise bad(f"relations[{k}][1]", rel[1], f"one of {', '.join(RELATIONS)}")
        if rel[0] == rel[2]:
            raise bad(f"relations[{k}]", rel, "a relation between two different objects")
    for axis, (fwd, back) in {"x": ("left_of", "right_of"), "y": ("above", "below")}.items():
        edges = [(a, b) if r == fwd else (b, a) for a, r, b in relations if r in (fwd, back)]
        if _has_cycle(len(objects), edges):
            raise bad("relations", relations, f"relations that can all hold at once ({axis} axis)")
    background = data.get("background")
    if background is not None and background not in BACKGROUND_COLORS:
        allowed = ", ".join(BACKGROUND_COLORS)
        raise bad("background", background, f"one of {allowed} or null")


def _has_cycle(n: int, edges: list[tuple[int, int]]) -> bool:
    indegree = [0] * n
    for _, b in edges:
        indegree[b] += 1
    ready = [i for i in range(n) if indegree[i] == 0]
    seen = 0
    while ready:
        node = ready.pop()
        seen += 1
        for a, b in edges:
            if a == node:
                indegree[b] -= 1
                if indegree[b] == 0:
                    ready.append(b)
    return seen < n


# -- sampling specs and captions ---------------------------------------------------------------
def sample_spec(rng: np.random.Generator, config: ShapesConfig, split: str = "train") -> ShapeSpec:
    """Draw a random spec of ``split`` (without a prompt; see :func:`caption`)."""
    check_split(split)
    n = int(rng.integers(config.min_objects, config.max_objects + 1))
    train_pairs = config.allowed_pairs("train")
    pairs = [train_pairs[i] for i in rng.integers(len(train_pairs), size=n)]
    sizes = [str(rng.choice(SIZES)) if rng.random() < config.p_size else None for _ in range(n)]
    if n > 1 and rng.random() < config.p_repeat:
        pairs, sizes = [pairs[0]] * n, [sizes[0]] * n
    if split == "heldout_compositions":  # at least one held-out pair (all of them if repeated)
        held = config.allowed_pairs(split)
        pair = held[int(rng.integers(len(held)))]
        chosen = range(n) if len(set(pairs)) == 1 and n > 1 else [int(rng.integers(n))]
        for i in chosen:
            pairs[i] = pair
    objects = tuple(ShapeObject(s, c, z) for (c, s), z in zip(pairs, sizes, strict=True))
    relations: tuple[tuple[int, str, int], ...] = ()
    unique = [i for i, o in enumerate(objects) if objects.count(o) == 1]
    p_relation = config.p_relation if n == 2 else config.p_relation / 2
    if len(unique) >= 2 and n <= 3 and rng.random() < p_relation:
        a, b = (int(i) for i in rng.choice(unique, size=2, replace=False))
        relations = ((a, str(rng.choice(RELATIONS)), b),)
    background = None
    if rng.random() < config.p_background:
        background = str(rng.choice(config.backgrounds))
    return ShapeSpec(objects, relations, background)


def _words(config: ShapesConfig, split: str) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
    if check_split(split) == "paraphrase":
        return config.paraphrase_vocab, config.paraphrase_templates
    return config.train_vocab, config.train_templates


def _plural(noun: str) -> str:
    head, _, last = noun.rpartition(" ")
    last = last + "es" if last.endswith(("x", "s", "sh", "ch")) else last + "s"
    return f"{head} {last}" if head else last


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def caption(
    spec: ShapeSpec,
    rng: np.random.Generator,
    split: str = "train",
    config: ShapesConfig | None = None,
) -> str:
    """A natural-language caption of ``spec`` from the templates and synonyms of ``split``."""
    config = config or ShapesConfig()
    vocab, templates = _words(config, split)

    def word(key: str) -> str:
        options = vocab[key]
        return options[int(rng.integers(len(options)))]

    def noun_phrase(obj: ShapeObject, count: int = 1) -> str:
        words = [word(obj.size)] if obj.size else []
        words += [word(obj.color), word(obj.shape)]
        if count == 1:
            return " ".join(words)
        words[-1] = _plural(words[-1])
        return f"{word(str(count))} " + " ".join(words)

    mentioned: set[int] = set()

    def refer(i: int) -> str:
        phrase = noun_phrase(spec.objects[i])
        first = i not in mentioned
        mentioned.add(i)
        return _article(phrase) if first else "the " + phrase

    clauses = []
    for a, rel, b in spec.relations:
        if rng.random() < 0.5:  # "B right of A" says the same as "A left of B"
            a, rel, b = b, INVERSE_RELATION[rel], a
        clauses.append(f"{refer(a)} {word(rel)} {refer(b)}")
    groups: dict[ShapeObject, int] = {}
    for i, obj in enumerate(spec.objects):
        if i not in mentioned:
            groups[obj] = groups.get(obj, 0) + 1
    for obj, count in groups.items():
        phrase = noun_phrase(obj, count)
        clauses.append(_article(phrase) if count == 1 else phrase)
    objects = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + " and " + clauses[-1]
    usable = [t for t in templates if ("{background}" in t) == (spec.background is not None)]
    template = usable[int(rng.integers(len(usable)))]
    background = word(spec.background) if spec.background else ""
    return template.format(objects=objects, background=background)


# -- layout and rendering ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PlacedObject:
    """An object with its position: centre of the bounding box (cx, cy) and half-side radius."""

    shape: str
    color: str
    size: str
    cx: float
    cy: float
    radius: float

    @property
    def centroid(self) -> tuple[float, float]:
        # An upright triangle's centroid lies a third of the way up from its base.
        return (self.cx, self.cy + self.radius / 3 if self.shape == "triangle" else self.cy)


@dataclasses.dataclass(frozen=True)
class Layout:
    objects: tuple[PlacedObject, ...]
    background: str


def relation_holds(rel: str, a: tuple[float, float], b: tuple[float, float], margin: float) -> bool:
    """Whether centre ``a`` is ``rel`` centre ``b`` by at least ``margin`` (y grows downwards)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    return {"left_of": dx, "right_of": -dx, "above": dy, "below": -dy}[rel] >= margin


def sample_layout(
    spec: ShapeSpec, rng: np.random.Generator, config: ShapesConfig, *, max_attempts: int = 300
) -> Layout:
    """Place the objects of ``spec`` without overlap, satisfying its relations."""
    n = len(spec.objects)
    sizes = [o.size or str(rng.choice(SIZES)) for o in spec.objects]
    radii = np.array([config.radius(s) for s in sizes])
    radii *= 1 + config.radius_jitter * rng.uniform(-1, 1, size=n)
    tri_shift = np.array(
        [r / 3 if o.shape == "triangle" else 0.0 for o, r in zip(spec.objects, radii, strict=True)]
    )
    background = spec.background or str(rng.choice(config.backgrounds))
    candidates = 256
    for _ in range(max_attempts):
        centres = np.full((n, 2), np.nan)
        for k in rng.permutation(n):
            lo, hi = radii[k] + config.border, 1 - radii[k] - config.border
            cand = rng.uniform(lo, hi, size=(candidates, 2))  # [C, 2] bounding-box centres
            ok = np.ones(candidates, dtype=bool)
            for j in np.flatnonzero(~np.isnan(centres[:, 0])):
                reach = radii[k] + radii[j] + config.min_gap
                apart = np.abs(cand - centres[j]).max(axis=1) >= reach
                ok &= apart
            for a, rel, b in spec.relations:
                if k not in (a, b) or np.isnan(centres[b if a == k else a, 0]):
                    continue
                other = b if a == k else a
                pk = cand + np.array([0.0, tri_shift[k]])  # [C, 2] centroids
                po = centres[other] + np.array([0.0, tri_shift[other]])
                d = po - pk if a == k else pk - po  # subject -> object offset
                offset = {
                    "left_of": d[:, 0],
                    "right_of": -d[:, 0],
                    "above": d[:, 1],
                    "below": -d[:, 1],
                }[rel]
                ok &= offset >= config.relation_margin
            valid = np.flatnonzero(ok)
            if valid.size == 0:
                break
            centres[k] = cand[valid[int(rng.integers(valid.size))]]
        else:
            objects = tuple(
                PlacedObject(o.shape, o.color, s, float(c[0]), float(c[1]), float(r))
                for o, s, c, r in zip(spec.objects, sizes, centres, radii, strict=True)
            )
            return Layout(objects, background)
    raise InvalidArgumentError(
        "spec", spec.prompt or spec.to_dict(), "a scene whose objects and relations fit the image",
        "Use fewer or smaller objects, or fewer relations.",
    )  # fmt: skip


def _inside(shape: str, x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    if shape == "square":
        return (np.abs(x - cx) <= r) & (np.abs(y - cy) <= r)
    # upright isosceles triangle: apex (cx, cy - r), base from (cx - r, cy + r) to (cx + r, cy + r)
    return (y <= cy + r) & (np.abs(x - cx) <= (y - cy + r) / 2)


def coverage(
    shape: str,
    cx: float,
    cy: float,
    radius: float,
    resolution: int,
    box: tuple[int, int, int, int],
    supersample: int,
) -> np.ndarray:
    """Fraction of each pixel of ``box`` = (x0, x1, y0, y1) covered by the shape: [y1-y0, x1-x0].

    ``(cx, cy)`` is the bounding-box centre in normalized units; coverage is the average
    over a ``supersample`` x ``supersample`` grid of points inside each pixel.
    """
    x0, x1, y0, y1 = box
    ss = supersample
    xs = (np.arange(x0 * ss, x1 * ss) + 0.5) / (ss * resolution)  # [w*ss] sub-sample centres
    ys = (np.arange(y0 * ss, y1 * ss) + 0.5) / (ss * resolution)  # [h*ss]
    inside = _inside(shape, xs[None, :], ys[:, None], cx, cy, radius)  # [h*ss, w*ss]
    return inside.reshape(y1 - y0, ss, x1 - x0, ss).mean(axis=(1, 3), dtype=np.float32)


def default_supersample(resolution: int) -> int:
    return max(2, min(8, 512 // resolution))


def render_layout(layout: Layout, resolution: int, *, supersample: int | None = None) -> np.ndarray:
    """Anti-aliased render: [H, W, 3] float32 in [0, 1]; each pixel is its covered-area average."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
        raise InvalidArgumentError("resolution", resolution, "an integer >= 8")
    ss = supersample or default_supersample(resolution)
    image = np.empty((resolution, resolution, 3), dtype=np.float32)
    image[:] = np.asarray(BACKGROUND_COLORS[layout.background], dtype=np.float32) / 255
    for obj in layout.objects:
        x0 = max(0, int(math.floor((obj.cx - obj.radius) * resolution)) - 1)
        x1 = min(resolution, int(math.ceil((obj.cx + obj.radius) * resolution)) + 1)
        y0 = max(0, int(math.floor((obj.cy - obj.radius) * resolution)) - 1)
        y1 = min(resolution, int(math.ceil((obj.cy + obj.radius) * resolution)) + 1)
        cover = coverage(obj.shape, obj.cx, obj.cy, obj.radius, resolution, (x0, x1, y0, y1), ss)
        color = np.asarray(OBJECT_COLORS[obj.color], dtype=np.float32) / 255
        region = image[y0:y1, x0:x1]
        image[y0:y1, x0:x1] = region * (1 - cover[..., None]) + color * cover[..., None]
    return image


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).contiguous() * 2 - 1  # [3, H, W] in [-1, 1]


def render(
    spec: ShapeSpec,
    resolution: int,
    *,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    config: ShapesConfig | None = None,
) -> torch.Tensor:
    """Render ``spec`` with a random layout: [3, H, W] float in [-1, 1]. Give ``seed`` or ``rng``."""
    if (seed is None) == (rng is None):
        raise InvalidArgumentError("seed/rng", (seed, rng), "exactly one of seed or rng")
    rng = rng if rng is not None else np.random.default_rng(seed)
    layout = sample_layout(spec, rng, config or ShapesConfig())
    return _to_tensor(render_layout(layout, resolution))


# -- the data set -----------------------------------------------------------------------------
class ShapesWorld(Dataset):
    """Captioned scenes of ``split``; item ``i`` depends only on (seed, split, i).

    Each item is ``{"image": [3, H, W] float in [-1, 1], "caption": str, "spec": ShapeSpec,
    "index": int}``; training resumes at any index with :meth:`iterate`.
    """

    def __init__(
        self,
        config: ShapesConfig | None = None,
        resolution: int = 32,
        split: str = "train",
        seed: int | None = None,
        length: int = 1_000_000,
    ):
        self.config = config or ShapesConfig()
        self.resolution = resolution
        self.split = check_split(split)
        self.seed = self.config.seed if seed is None else seed
        if length < 1:
            raise InvalidArgumentError("length", length, "a positive integer")
        self.length = length

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int) -> tuple[ShapeSpec, Layout]:
        """The spec (with its caption as prompt) and layout of item ``index``, without pixels."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for ShapesWorld of length {self.length}")
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), index])
        spec = sample_spec(rng, self.config, self.split)
        spec = spec.with_prompt(caption(spec, rng, self.split, self.config))
        return spec, sample_layout(spec, rng, self.config)

    def __getitem__(self, index: int) -> dict[str, Any]:
        spec, layout = self.sample(index)
        image = _to_tensor(render_layout(layout, self.resolution))  # [3, H, W]
        return {"image": image, "caption": spec.prompt, "spec": spec, "index": index}

    def iterate(self, start: int = 0) -> Iterator[dict[str, Any]]:
        for index in range(start, self.length):
            yield self[index]


def collate_shapes(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """DataLoader ``collate_fn``: stacks images [B, 3, H, W], keeps captions and specs as lists."""
    return {
        "image": torch.stack([b["image"] for b in batch]),
        "caption": [b["caption"] for b in batch],
        "spec": [b["spec"] for b in batch],
        "index": torch.tensor([b["index"] for b in batch]),
    }
