"""The shapes world: config, specs, splits, captions, rendering, determinism, export."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

from openimagen.config import ConfigError
from openimagen.data.export import export_split
from openimagen.data.shapes import (
    OBJECT_COLORS,
    SPLITS,
    Layout,
    PlacedObject,
    ShapeObject,
    ShapesConfig,
    ShapeSpec,
    ShapesWorld,
    caption,
    collate_shapes,
    render,
    render_layout,
    sample_layout,
)
from openimagen.errors import InvalidArgumentError


# -- config ----------------------------------------------------------------------------------
def test_data_config_round_trips_through_json(tmp_path):
    config = ShapesConfig(heldout_pairs=(("green", "square"),), seed=7)
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
        (
            {"paraphrase_vocab": {**ShapesConfig().paraphrase_vocab, "red": ("red",)}},
            "paraphrase_vocab.red",
        ),
        ({"train_templates": ("a picture of", "{objects} on {background}")}, "train_templates"),
    ],
)
def test_data_config_rejects_inconsistent_fields_naming_them(changes, field):
    with pytest.raises(ConfigError, match=re.escape(field)):
        ShapesConfig(**changes)


# -- specs -----------------------------------------------------------------------------------
def test_data_spec_json_round_trip_and_field_errors():
    data = {
        "prompt": "a red circle left of a blue square",
        "objects": [
            {"shape": "circle", "color": "red", "size": None},
            {"shape": "square", "color": "blue", "size": "large"},
        ],
        "relations": [[0, "left_of", 1]],
        "background": "black",
    }
    spec = ShapeSpec.from_dict(data)
    assert spec.objects[1] == ShapeObject("square", "blue", "large")
    assert spec.relations == ((0, "left_of", 1),)
    assert ShapeSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec

    bad = json.loads(json.dumps(data))
    bad["objects"][1]["size"] = "medium"
    with pytest.raises(InvalidArgumentError, match=r"spec\.objects\[1\]\.size='medium'"):
        ShapeSpec.from_dict(bad)
    cyclic = dict(data, relations=[[0, "left_of", 1], [1, "left_of", 0]])
    with pytest.raises(InvalidArgumentError, match=r"spec\.relations.*x axis"):
        ShapeSpec.from_dict(cyclic)
    with pytest.raises(InvalidArgumentError, match=r"spec\.relations\[0\]"):
        ShapeSpec.from_dict(dict(data, relations=[[1, "above", 1]]))
    with pytest.raises(InvalidArgumentError, match=r"spec\.colour"):
        ShapeSpec.from_dict(dict(data, colour="red"))


def test_data_unsatisfiable_layout_is_a_clear_error():
    # with radius 0.25, two large objects (0.5 wide plus the gap) cannot both fit
    config = ShapesConfig(small_radius=0.1, large_radius=0.25)
    spec = ShapeSpec(
        (ShapeObject("square", "red", "large"), ShapeObject("circle", "blue", "large"))
    )
    with pytest.raises(InvalidArgumentError, match="fit the image"):
        sample_layout(spec, np.random.default_rng(0), config, max_attempts=20)
    # one of them fits
    assert (
        len(
            sample_layout(
                spec.__class__(spec.objects[:1]), np.random.default_rng(0), config
            ).objects
        )
        == 1
    )


# -- layouts and rendering -------------------------------------------------------------------
def test_data_layouts_satisfy_relations_without_overlap():
    config = ShapesConfig()
    spec = ShapeSpec(
        (
            ShapeObject("triangle", "red", "large"),
            ShapeObject("circle", "blue", "large"),
            ShapeObject("square", "green"),
        ),
        ((0, "above", 1), (2, "right_of", 1)),
    )
    for seed in range(100):
        layout = sample_layout(spec, np.random.default_rng(seed), config)
        objs = layout.objects
        (ax, ay), (bx, by), (cx, _) = (o.centroid for o in objs)
        assert by - ay >= config.relation_margin  # y grows downwards: 0 above 1
        assert cx - bx >= config.relation_margin
        for i in range(3):
            lo, hi = (
                objs[i].radius + config.border - 1e-9,
                1 - objs[i].radius - config.border + 1e-9,
            )
            assert lo <= objs[i].cx <= hi and lo <= objs[i].cy <= hi
            for j in range(i):
                reach = objs[i].radius + objs[j].radius + config.min_gap
                assert (
                    max(abs(objs[i].cx - objs[j].cx), abs(objs[i].cy - objs[j].cy)) >= reach - 1e-9
                )


@pytest.mark.parametrize(
    ("shape", "factor"), [("circle", math.pi), ("square", 4.0), ("triangle", 2.0)]
)
def test_data_render_is_antialiased_with_exact_area(shape, factor):
    r = 0.137
    layout = Layout((PlacedObject(shape, "yellow", "large", 0.503, 0.481, r),), "black")
    image = render_layout(layout, 64)
    color = np.asarray(OBJECT_COLORS["yellow"]) / 255
    alpha = image @ color / (color @ color)  # coverage per pixel on black
    assert abs(alpha.sum() / 64**2 - factor * r * r) < 0.01 * factor * r * r
    fractional = ((alpha > 0.02) & (alpha < 0.98)).sum()
    assert fractional > 10  # anti-aliased edge pixels, not a hard mask
    assert alpha.min() >= -1e-6 and alpha.max() <= 1 + 1e-6


def test_data_same_scene_at_every_resolution():
    spec = ShapeSpec(
        (ShapeObject("circle", "red", "large"), ShapeObject("triangle", "green", "small"))
    )
    small = render(spec, 32, seed=3)  # [3, 32, 32]
    big = render(spec, 128, seed=3)  # [3, 128, 128]
    pooled = torch.nn.functional.avg_pool2d(big[None], 4)[0]
    assert small.shape == (3, 32, 32) and big.shape == (3, 128, 128)
    assert (pooled - small).abs().mean() < 0.01
    assert not torch.equal(render(spec, 32, seed=3), render(spec, 32, seed=4))
    with pytest.raises(InvalidArgumentError, match="seed/rng"):
        render(spec, 32)


# -- splits and captions ---------------------------------------------------------------------
def _phrase_in(phrase: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", text) is not None


def test_data_splits_hold_out_compositions_and_wording():
    config = ShapesConfig()
    held = set(config.heldout_pairs)
    train_words = {w for words in config.train_vocab.values() for w in words}
    para_words = {w for words in config.paraphrase_vocab.values() for w in words}
    for split in SPLITS:
        world = ShapesWorld(config, 32, split, seed=1)
        for i in range(300):
            spec, _ = world.sample(i)
            pairs = {(o.color, o.shape) for o in spec.objects}
            if split == "heldout_compositions":
                assert pairs & held, spec
            else:
                assert not pairs & held, spec
            text = spec.prompt
            if split == "paraphrase":
                assert not [w for w in train_words if _phrase_in(w, text)], text
                assert not any(w in text for w in ("picture of", "image showing", "background")), (
                    text
                )
            else:
                assert not [w for w in para_words if _phrase_in(w, text)], text
                assert not any(
                    w in text for w in ("rendering", "here we see", "backdrop", "canvas")
                )


def test_data_caption_counts_relations_and_background():
    config = ShapesConfig()
    rng = np.random.default_rng(0)
    three = ShapeSpec((ShapeObject("square", "blue"),) * 3)
    for _ in range(20):
        text = caption(three, rng, "train", config)
        assert re.search(r"\bthree blue (squares|boxes)\b", text), text
    rel = ShapeSpec(
        (ShapeObject("circle", "red"), ShapeObject("triangle", "green")),
        ((0, "left_of", 1),),
        "white",
    )
    texts = {caption(rel, rng, "train", config) for _ in range(40)}
    assert any(re.search(r"red (circle|disk) (to the )?left of an? green", t) for t in texts)
    assert any(
        re.search(r"green (triangle|triangular shape) (to the )?right of an? red", t) for t in texts
    )
    assert all("white" in t for t in texts)


# -- the data set ----------------------------------------------------------------------------
def test_data_world_is_deterministic_by_seed_and_index():
    world = ShapesWorld(ShapesConfig(), 32, "train", seed=5, length=50)
    first, again = world[17], ShapesWorld(ShapesConfig(), 32, "train", seed=5, length=50)[17]
    assert torch.equal(first["image"], again["image"]) and first["caption"] == again["caption"]
    assert first["spec"] == again["spec"] and first["spec"].prompt == first["caption"]
    assert first["image"].shape == (3, 32, 32) and first["image"].dtype == torch.float32
    assert first["image"].min() >= -1 and first["image"].max() <= 1
    resumed = list(world.iterate(start=48))
    assert [r["index"] for r in resumed] == [48, 49]
    assert torch.equal(resumed[0]["image"], world[48]["image"])
    other_seed = ShapesWorld(ShapesConfig(), 32, "train", seed=6)[17]
    assert other_seed["caption"] != first["caption"] or not torch.equal(
        other_seed["image"], first["image"]
    )
    with pytest.raises(IndexError):
        world[50]
    batch = collate_shapes([world[0], world[1]])
    assert batch["image"].shape == (2, 3, 32, 32) and len(batch["caption"]) == 2


def test_data_export_writes_images_captions_and_manifest(tmp_path):
    manifest = export_split(
        None, "paraphrase", tmp_path, n=4, resolution=32, seed=2, progress=False
    )
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    world = ShapesWorld(None, 32, "paraphrase", seed=2)
    assert len(lines) == 4
    for i, line in enumerate(lines):
        item = world[i]
        assert line["image"] == f"{i:05d}.png" and line["caption"] == item["caption"]
        assert (tmp_path / f"{i:05d}.txt").read_text().strip() == item["caption"]
        assert ShapeSpec.from_dict(line["spec"]) == item["spec"]
        pixels = np.asarray(Image.open(tmp_path / line["image"]), dtype=np.float32) / 127.5 - 1
        assert np.abs(pixels - item["image"].permute(1, 2, 0).numpy()).max() <= 1 / 127.5 + 1e-6
    assert not list(tmp_path.glob(".*.tmp"))
