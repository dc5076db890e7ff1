"""Layouts: where the objects of a spec go, without overlap, with its relations holding."""

from __future__ import annotations

import dataclasses

import numpy as np

from openimagen.data.shapes.spec import SIZES, ShapeSpec
from openimagen.data.shapes.world import ShapesConfig
from openimagen.errors import InvalidArgumentError


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
