"""The world's config and scene distribution: the mix, the splits, config errors."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from openimagen.config import ConfigError
from openimagen.data.shapes import (
    DEFAULT_MIX,
    SPLITS,
    ShapesConfig,
    ShapesWorld,
    sample_spec,
)
from openimagen.eval.shapebench import CATEGORIES


def test_world_config_round_trips_through_json(tmp_path):
    config = ShapesConfig(heldout_pairs=(("green", "square"),), seed=7, mix={"single": 1.0})
    path = tmp_path / "shapes.json"
    path.write_text(config.to_json())
    assert ShapesConfig.from_json_file(path) == config


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"colors": ("red", "pink")}, "colors"),
        ({"max_objects": 5}, "max_objects"),
        ({"small_radius": 0.2, "large_radius": 0.1}, "small_radius"),
        ({"heldout_pairs": (("red", "hexagon"),)}, "heldout_pairs"),
        (
            {"heldout_pairs": (("red", "circle"), ("red", "square"), ("red", "triangle"))},
            "heldout_pairs",
        ),
        ({"mix": {"five_objects": 1.0}}, "mix.five_objects"),
        ({"mix": {"single": -1.0}}, "mix.single"),
        ({"mix": {"relation": 1.0}, "max_objects": 1}, "mix"),
    ],
)
def test_world_config_rejects_inconsistent_fields_naming_them(changes, field):
    with pytest.raises(ConfigError, match=re.escape(field)):
        ShapesConfig(**changes)


def _kind(spec) -> str:
    n, distinct = len(spec.objects), len(set(spec.objects))
    if n == 1:
        return "single"
    if distinct == 1 and n <= 4 and not spec.relations:
        return "counting"
    if n == 2:
        return "relation" if spec.relations else "two_objects"
    if distinct == 2 and spec.relations and n in (3, 4) and len(spec.relations) >= 2:
        return "group_relation"
    return "three_objects" if n == 3 and distinct == 3 else "four_objects"


def test_world_draws_the_mix_including_groups_in_relations():
    config = ShapesConfig()
    rng = np.random.default_rng(0)
    specs = [sample_spec(rng, config) for _ in range(3000)]
    counts = Counter(_kind(s) for s in specs)
    total = sum(DEFAULT_MIX.values())
    for kind, weight in DEFAULT_MIX.items():
        # four_objects may repeat a pair and then look like a group; allow for that
        assert abs(counts[kind] / 3000 - weight / total) < 0.035, (kind, counts)
    for spec in specs:
        if _kind(spec) == "group_relation":  # the relation holds for every member pair
            (rel,) = {r for _, r, _ in spec.relations}
            a_group = {a for a, _, _ in spec.relations}
            b_group = {b for _, _, b in spec.relations}
            assert set(spec.relations) == {(a, rel, b) for a in a_group for b in b_group}
            assert len({spec.objects[i] for i in a_group}) == 1 and len(a_group) >= 2


def test_world_covers_every_shapebench_category():
    # each ShapeBench category is a kind of training scene (size: any scene with sizes)
    rng = np.random.default_rng(1)
    specs = [sample_spec(rng, ShapesConfig()) for _ in range(500)]
    kinds = {_kind(s) for s in specs}
    wanted = {"single_object": "single", "size": "single", "counting": "counting",
              "two_objects": "two_objects", "relation": "relation",
              "group_relation": "group_relation"}  # fmt: skip
    assert set(wanted) == set(CATEGORIES)
    assert set(wanted.values()) <= kinds
    assert any(len(s.objects) == 1 and s.objects[0].size for s in specs)


def test_world_max_objects_filters_the_mix():
    rng = np.random.default_rng(2)
    config = ShapesConfig(max_objects=1)
    assert list(config.kinds()) == ["single"]
    assert all(len(sample_spec(rng, config).objects) == 1 for _ in range(50))


def test_world_splits_hold_out_compositions():
    config = ShapesConfig()
    held = set(config.heldout_pairs)
    for split in SPLITS:
        world = ShapesWorld(config, 32, split, seed=1)
        for i in range(300):
            spec, layout = world.sample(i)
            pairs = {(o.color, o.shape) for o in spec.objects}
            assert bool(pairs & held) == (split == "heldout_compositions"), spec
            assert len(layout.objects) == len(spec.objects)
