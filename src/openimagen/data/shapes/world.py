"""The world's config and its scene distribution: which specs training draws, per split.

A scene is one of :data:`SCENE_KINDS`, drawn by the weights of ``ShapesConfig.mix``, so that
training covers every prompt category ShapeBench scores (single objects, sizes, counts, two
objects, relations between objects and between counted groups) and more (three and four
objects, up to two relations).

Three splits share one config:

* ``train``: colour-shape pairs outside ``heldout_pairs``, captions in ``train_language``;
* ``heldout_compositions``: every scene contains a held-out colour-shape pair (all members
  of its group), captions in the training language (only the composition is new);
* ``paraphrase``: training compositions, captions in ``paraphrase_language``, whose words
  and constructions training never uses (:func:`~openimagen.data.shapes.language.language_overlap`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from openimagen.config import Config
from openimagen.data.shapes.language import (
    CaptionLanguage,
    describe,
    language_overlap,
)
from openimagen.data.shapes.languages import PARAPHRASE_LANGUAGE, TRAIN_LANGUAGE
from openimagen.data.shapes.spec import (
    BACKGROUND_COLORS,
    MAX_OBJECTS,
    OBJECT_COLORS,
    RELATIONS,
    SHAPES,
    SIZES,
    ShapeObject,
    ShapeSpec,
    check_split,
    has_cycle,
)
from openimagen.errors import ConfigError

#: scene kind -> (fewest objects, most objects, distinct colour-shape pairs it needs)
SCENE_KINDS: dict[str, tuple[int, int, int]] = {
    "single": (1, 1, 1),  # one object
    "counting": (2, 4, 1),  # N copies of one object
    "two_objects": (2, 2, 2),  # two different objects
    "relation": (2, 2, 2),  # two different objects and a relation between them
    "group_relation": (3, 4, 2),  # a counted group in a relation to an object or a group
    "three_objects": (3, 3, 3),  # three different objects, with 0 to 2 relations
    "four_objects": (4, 4, 1),  # four objects of any kind, no relations
}
DEFAULT_MIX: dict[str, float] = {
    "single": 0.12,
    "counting": 0.12,
    "two_objects": 0.12,
    "relation": 0.24,
    "group_relation": 0.16,
    "three_objects": 0.16,
    "four_objects": 0.08,
}


@dataclasses.dataclass(frozen=True)
class ShapesConfig(Config):
    """Everything that defines the shapes world and its splits (JSON/TOML round-trips)."""

    colors: tuple[str, ...] = tuple(OBJECT_COLORS)
    shapes: tuple[str, ...] = SHAPES
    backgrounds: tuple[str, ...] = tuple(BACKGROUND_COLORS)
    # scene kinds outside [min_objects, max_objects] are dropped from the mix
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
    mix: dict[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_MIX))
    # The split definition.
    heldout_pairs: tuple[tuple[str, str], ...] = (
        ("red", "triangle"),
        ("blue", "circle"),
        ("yellow", "square"),
    )
    train_language: CaptionLanguage = TRAIN_LANGUAGE
    paraphrase_language: CaptionLanguage = PARAPHRASE_LANGUAGE
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
        for name in ("p_size", "p_background"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name}={getattr(self, name)} must be in [0, 1]")
        for kind, weight in self.mix.items():
            if kind not in SCENE_KINDS:
                raise ConfigError(f"mix.{kind}: unknown scene kind; allowed: {list(SCENE_KINDS)}")
            if not weight >= 0.0:
                raise ConfigError(f"mix.{kind}={weight}: must be >= 0")
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
        if not self.kinds():
            raise ConfigError(
                f"mix: no scene kind with a positive weight fits min_objects={self.min_objects}, "
                f"max_objects={self.max_objects} and {len(allowed)} colour-shape pairs"
            )
        overlap = language_overlap(self.train_language, self.paraphrase_language)
        if overlap:
            raise ConfigError("paraphrase_language: " + "; ".join(overlap))

    def allowed_pairs(self, split: str) -> list[tuple[str, str]]:
        """Colour-shape pairs that may appear in ``split`` (held-out pairs only in their split)."""
        held = set(map(tuple, self.heldout_pairs))
        pairs = [(c, s) for c in self.colors for s in self.shapes]
        if split == "heldout_compositions":
            return [p for p in pairs if p in held]
        return [p for p in pairs if p not in held]

    def kinds(self) -> dict[str, tuple[float, int, int]]:
        """Scene kinds this config can draw: kind -> (weight, fewest, most objects)."""
        pairs = len(self.allowed_pairs("train"))
        out = {}
        for kind, weight in self.mix.items():
            lo, hi, distinct = SCENE_KINDS[kind]
            lo, hi = max(lo, self.min_objects), min(hi, self.max_objects)
            if weight > 0 and lo <= hi and distinct <= pairs:
                out[kind] = (weight, lo, hi)
        return out

    def radius(self, size: str) -> float:
        return self.small_radius if size == "small" else self.large_radius

    def language(self, split: str) -> CaptionLanguage:
        return (
            self.paraphrase_language if check_split(split) == "paraphrase" else self.train_language
        )


# -- drawing specs -----------------------------------------------------------------------------
def _distinct_pairs(rng: np.random.Generator, pool: list, k: int) -> list[tuple[str, str]]:
    return [pool[i] for i in rng.choice(len(pool), size=k, replace=False)]


def _random_relations(
    rng: np.random.Generator, n: int, count: int
) -> tuple[tuple[int, str, int], ...]:
    """``count`` relations between distinct objects of ``0..n-1`` that can all hold at once."""
    while True:
        relations: list[tuple[int, str, int]] = []
        pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
        for k in rng.choice(len(pairs), size=count, replace=False):
            a, b = pairs[int(k)]
            if rng.random() < 0.5:
                a, b = b, a
            relations.append((a, str(rng.choice(RELATIONS)), b))
        axes_ok = True
        for fwd, back in (("left_of", "right_of"), ("above", "below")):
            edges = [(a, b) if r == fwd else (b, a) for a, r, b in relations if r in (fwd, back)]
            axes_ok &= not has_cycle(n, edges)
        if axes_ok:
            return tuple(relations)


def sample_spec(rng: np.random.Generator, config: ShapesConfig, split: str = "train") -> ShapeSpec:
    """Draw a random spec of ``split`` (without a prompt; see :func:`caption`)."""
    check_split(split)
    kinds = config.kinds()
    names = list(kinds)
    weights = np.array([kinds[k][0] for k in names])
    kind = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    _, lo, hi = kinds[kind]
    pool = config.allowed_pairs("train")

    # groups: (colour-shape pair, how many copies); relations between groups
    group_relations: list[tuple[int, str, int]] = []
    if kind in ("single", "counting"):
        groups = [(pool[int(rng.integers(len(pool)))], int(rng.integers(lo, hi + 1)))]
    elif kind in ("two_objects", "relation", "three_objects"):
        groups = [(p, 1) for p in _distinct_pairs(rng, pool, lo)]
    elif kind == "group_relation":
        n = int(rng.integers(lo, hi + 1))
        first = int(rng.integers(2, n))  # the counted group; the rest is an object or a group
        groups = list(zip(_distinct_pairs(rng, pool, 2), (first, n - first), strict=True))
        group_relations = [(0, str(rng.choice(RELATIONS)), 1)]
    else:  # four_objects: any pairs, repeats allowed, no relations
        groups = [(pool[int(i)], 1) for i in rng.integers(len(pool), size=lo)]
    sizes = [str(rng.choice(SIZES)) if rng.random() < config.p_size else None for _ in groups]
    if split == "heldout_compositions":  # one group becomes a held-out pair
        held = config.allowed_pairs(split)
        g = int(rng.integers(len(groups)))
        groups[g] = (held[int(rng.integers(len(held)))], groups[g][1])

    objects: list[ShapeObject] = []
    members: list[list[int]] = []
    for ((color, shape), count), size in zip(groups, sizes, strict=True):
        members.append(list(range(len(objects), len(objects) + count)))
        objects += [ShapeObject(shape, color, size)] * count
    relations: tuple[tuple[int, str, int], ...] = tuple(
        (a, rel, b) for ga, rel, gb in group_relations for a in members[ga] for b in members[gb]
    )
    if kind == "relation":
        relations = _random_relations(rng, 2, 1)
    elif kind == "three_objects":
        relations = _random_relations(rng, 3, int(rng.integers(0, 3)))
    background = None
    if rng.random() < config.p_background:
        background = str(rng.choice(config.backgrounds))
    return ShapeSpec(tuple(objects), relations, background)


def caption(
    spec: ShapeSpec,
    rng: np.random.Generator,
    split: str = "train",
    config: ShapesConfig | None = None,
) -> str:
    """A natural-language caption of ``spec`` in the language of ``split``."""
    return describe(spec, rng, (config or ShapesConfig()).language(split))
