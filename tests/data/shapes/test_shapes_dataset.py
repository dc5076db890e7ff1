"""The data set: determinism by (seed, split, index), batching, export to a folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from openimagen.data.export import export_split
from openimagen.data.shapes import ShapesConfig, ShapeSpec, ShapesWorld, collate_shapes


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
