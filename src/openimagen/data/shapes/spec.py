"""Scene specs of the shapes world: its vocabulary of concepts and the JSON spec format.

A :class:`ShapeSpec` is a scene as a prompt asks for it (objects, relations, background; no
positions): the JSON line of a ShapeBench prompt file and the ground truth of every
training caption.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from openimagen.errors import InvalidArgumentError

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
        if has_cycle(len(objects), edges):
            raise bad("relations", relations, f"relations that can all hold at once ({axis} axis)")
    background = data.get("background")
    if background is not None and background not in BACKGROUND_COLORS:
        allowed = ", ".join(BACKGROUND_COLORS)
        raise bad("background", background, f"one of {allowed} or null")


def has_cycle(n: int, edges: list[tuple[int, int]]) -> bool:
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
