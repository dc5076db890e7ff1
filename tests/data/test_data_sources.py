"""Folder, JSONL, WebDataset and shapes sources behind one interface; positions and crops."""

from __future__ import annotations

import io
import json
import tarfile
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from openimagen.data.shapes import ShapesConfig, ShapesWorld
from openimagen.data.sources import (
    FolderSource,
    JsonlSource,
    WebDatasetSource,
    downsample,
    item_index,
    open_source,
    prepare_image,
)
from openimagen.errors import ConfigError

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
CAPTIONS = ["a red image", "a green image", "a blue image"]


def png_bytes(colour, size=(12, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def expected_pixel(colour) -> torch.Tensor:
    return torch.tensor(colour, dtype=torch.float32) / 127.5 - 1


def check_source(source) -> None:
    assert len(source) == 3
    seen = {}
    for i in range(3):
        image, caption = source.read(i)
        tensor = prepare_image(image, 8)  # [3, 8, 8]
        assert tensor.shape == (3, 8, 8)
        seen[caption] = tensor[:, 4, 4]
    assert sorted(seen) == sorted(CAPTIONS)
    for colour, caption in zip(COLOURS, CAPTIONS, strict=True):
        assert torch.allclose(seen[caption], expected_pixel(colour), atol=1e-5)


def test_folder_source_pairs_images_with_txt_captions(tmp_path):
    (tmp_path / "sub").mkdir()
    for i, (colour, caption) in enumerate(zip(COLOURS, CAPTIONS, strict=True)):
        folder = tmp_path / ("sub" if i else "")
        (folder / f"img{i}.png").write_bytes(png_bytes(colour))
        (folder / f"img{i}.txt").write_text(caption + "\n")
    (tmp_path / "uncaptioned.png").write_bytes(png_bytes((0, 0, 0)))
    check_source(FolderSource(tmp_path))
    with pytest.raises(ConfigError, match="data.path"):
        FolderSource(tmp_path / "sub" / "img1.png")


def test_jsonl_manifest_resolves_paths_relative_to_itself(tmp_path):
    (tmp_path / "images").mkdir()
    lines = []
    for i, (colour, caption) in enumerate(zip(COLOURS, CAPTIONS, strict=True)):
        (tmp_path / "images" / f"{i}.png").write_bytes(png_bytes(colour))
        lines.append(json.dumps({"image": f"images/{i}.png", "caption": caption}))
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    check_source(JsonlSource(manifest))
    manifest.write_text(lines[0] + "\n" + json.dumps({"image": "images/9.png", "caption": "x"}))
    with pytest.raises(ConfigError, match="9.png"):
        JsonlSource(manifest)
    manifest.write_text('{"caption": "no image"}\n')
    with pytest.raises(ConfigError, match="train.jsonl:1"):
        JsonlSource(manifest)


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_webdataset_shards_pair_members_by_key(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    with tarfile.open(shards / "000000.tar", "w") as tar:
        add(tar, "a/000.png", png_bytes(COLOURS[0]))
        add(tar, "a/000.txt", CAPTIONS[0].encode())
        add(tar, "a/001.png", png_bytes(COLOURS[1]))
        add(tar, "a/001.json", json.dumps({"caption": CAPTIONS[1], "url": "x"}).encode())
        add(tar, "a/002.png", png_bytes((9, 9, 9)))  # no caption: skipped
    with tarfile.open(shards / "000001.tar", "w") as tar:
        add(tar, "003.txt", CAPTIONS[2].encode())
        add(tar, "003.png", png_bytes(COLOURS[2]))
    check_source(WebDatasetSource(sorted(shards.glob("*.tar"))))
    config = SimpleNamespace(source="webdataset", path=str(shards / "*.tar"))
    assert len(open_source(config, 8)) == 3
    (shards / "000002.tar").write_bytes(b"not a tar file at all" * 40)
    with pytest.raises(ConfigError, match="000002.tar"):
        WebDatasetSource(sorted(shards.glob("*.tar")))


def test_shapes_source_matches_the_shapes_world():
    config = SimpleNamespace(source="shapes", shapes={"colors": ["red", "blue"],
                             "heldout_pairs": []}, split="train", seed=5, image_size=0)  # fmt: skip
    source = open_source(config, 32)
    world = ShapesWorld(ShapesConfig(colors=("red", "blue"), heldout_pairs=(), seed=5), 32)
    image, caption = source.read(11)
    assert caption == world[11]["caption"]
    assert torch.equal(image, world[11]["image"])


def test_positions_are_a_fresh_permutation_each_epoch_and_repeatable():
    first = [item_index(i, 10, seed=1) for i in range(10)]
    second = [item_index(i, 10, seed=1) for i in range(10, 20)]
    assert sorted(first) == sorted(second) == list(range(10))
    assert first != second
    assert first == [item_index(i, 10, seed=1) for i in range(10)]
    assert first != [item_index(i, 10, seed=2) for i in range(10)]


def test_resize_then_centre_or_random_crop():
    image = torch.linspace(-1, 1, 40).view(1, 1, 40).expand(3, 20, 40).contiguous()  # [3,20,40]
    centre = prepare_image(image, 20)
    assert torch.equal(centre, image[:, :, 10:30])
    crops = {
        float(prepare_image(image, 20, random_crop=True, generator=torch.Generator().manual_seed(s))[0, 0, 0])
        for s in range(20)
    }  # fmt: skip
    assert len(crops) > 5  # different left edges
    small = prepare_image(image, 8)  # shorter side 20 -> 8, then centre crop
    assert small.shape == (3, 8, 8)
    assert float(small[0, 0, 0]) < float(small[0, 0, -1])


def test_downsampled_shapes_image_equals_a_low_resolution_render():
    # The SR stage's low-res input is the high-res image box-filtered: the same area average
    # the renderer computes, so it matches a render made directly at the low resolution.
    world_hi = ShapesWorld(ShapesConfig(), 64)
    world_lo = ShapesWorld(ShapesConfig(), 16)
    for i in range(3):
        low = downsample(world_hi[i]["image"][None], 16)[0]
        assert np.abs((low - world_lo[i]["image"]).numpy()).mean() < 0.02
