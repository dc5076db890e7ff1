"""Image edges: tensor <-> PIL, PNG provenance chunks, grids, atomic writes."""

from __future__ import annotations

import pytest
import torch

from openimagen.errors import InvalidArgumentError
from openimagen.images import (
    from_pil,
    make_grid,
    numbered_paths,
    read_png_metadata,
    save_images,
    save_png,
    to_pil,
)


def test_pil_round_trip_is_exact_on_the_8_bit_grid():
    levels = torch.randint(0, 256, (3, 5, 7)).float()
    image = levels / 127.5 - 1
    back = from_pil(to_pil(image))
    assert back.shape == (3, 5, 7)
    assert torch.equal(((back + 1) * 127.5).round(), levels)


def test_to_pil_clips_out_of_range_values_and_rejects_bad_shapes():
    image = torch.tensor([[[-3.0, 3.0]]]).expand(3, 1, 2)
    pil = to_pil(image)
    assert [pil.getpixel((0, 0)), pil.getpixel((1, 0))] == [(0, 0, 0), (255, 255, 255)]
    with pytest.raises(InvalidArgumentError, match=r"image.shape=\(4, 2, 2\)"):
        to_pil(torch.zeros(4, 2, 2))


def test_png_metadata_round_trip_and_ai_flag(tmp_path):
    path = save_png(torch.zeros(3, 4, 4), tmp_path / "a.png", {"prompt": "a red circle", "seed": 3})
    meta = read_png_metadata(path)
    assert meta == {"ai_generated": "true", "prompt": "a red circle", "seed": "3"}
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temp file left


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = save_png(torch.zeros(3, 2, 2), tmp_path / "a.png", {"prompt": "old"})
    before = path.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("PIL.Image.Image.save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_png(torch.ones(3, 2, 2), path, {"prompt": "new"})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_grid_places_each_image_in_row_major_order():
    images = torch.stack([torch.full((3, 2, 2), v) for v in (-1.0, -0.5, 0.0, 0.5, 1.0)])
    grid = make_grid(images, columns=3, padding=1)
    assert grid.shape == (3, 1 + 2 * 3, 1 + 3 * 3)
    assert grid[0, 1, 1] == -1.0 and grid[0, 1, 4] == -0.5 and grid[0, 4, 1] == 0.5
    assert grid[0, 4, 7] == 1.0  # the empty sixth cell stays white padding


def test_save_images_numbers_files_and_writes_a_grid(tmp_path):
    images = torch.zeros(2, 3, 4, 4)
    paths = save_images(images, tmp_path / "x.png", [{"seed": 0}, {"seed": 1}])
    assert [p.name for p in paths] == ["x-0.png", "x-1.png", "x-grid.png"]
    assert read_png_metadata(paths[2])["seeds"] == "[0, 1]"
    assert numbered_paths(tmp_path / "y.png", 1) == [tmp_path / "y.png"]
