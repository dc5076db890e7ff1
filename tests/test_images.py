"""Image edges: tensor <-> PIL, PNG provenance (chunks and watermark), grids, atomic writes."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from openimagen.errors import InvalidArgumentError
from openimagen.images import (
    from_pil,
    make_grid,
    numbered_paths,
    png_bytes,
    read_png_metadata,
    save_images,
    save_png,
    to_pil,
)
from openimagen.watermark import METHOD, detect_watermark, embed_watermark


def noise_image(size: int = 64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(3, size, size, generator=generator) * 2 - 1  # [3, S, S] in [-1, 1]


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


def test_png_bytes_carries_text_chunks_and_the_mark():
    image = noise_image()
    meta = {"prompt": "a red circle", "seed": "3", "sampling": [{"steps": 4}]}
    marked = Image.open(io.BytesIO(png_bytes(image, meta)))
    assert marked.format == "PNG"
    assert marked.text["ai_generated"] == "true" and marked.text["prompt"] == "a red circle"
    assert json.loads(marked.text["sampling"]) == [{"steps": 4}]
    assert marked.text["watermark"] == METHOD
    assert detect_watermark(marked)[0]
    # the pixels are exactly the marked image's: the mark is the only change
    expected = np.asarray(embed_watermark(to_pil(image)))
    assert np.array_equal(np.asarray(marked.convert("RGB")), expected)
    plain = Image.open(io.BytesIO(png_bytes(image, meta, watermark=False)))
    assert "watermark" not in plain.text and not detect_watermark(plain)[0]
    assert plain.text["ai_generated"] == "true"
    assert np.array_equal(np.asarray(plain.convert("RGB")), np.asarray(to_pil(image)))
    # prompts outside Latin-1 (tEXt's charset) survive too (Pillow writes them as iTXt)
    unicode = Image.open(io.BytesIO(png_bytes(image, {"prompt": "ein roter Kreis \u2014 \u7ea2"})))
    assert unicode.text["prompt"] == "ein roter Kreis \u2014 \u7ea2"


def test_every_file_save_images_writes_is_marked(tmp_path):
    images = torch.stack([noise_image(seed=i) for i in range(2)])  # [2, 3, 64, 64]
    paths = save_images(images, tmp_path / "m.png", [{"seed": 0}, {"seed": 1}])
    assert len(paths) == 3  # two images and the grid
    for path in paths:
        with Image.open(path) as image:
            assert detect_watermark(image)[0], path.name
            assert image.text["watermark"] == METHOD
    unmarked = save_png(images[0], tmp_path / "u.png", {"seed": 0}, watermark=False)
    with Image.open(unmarked) as image:
        assert not detect_watermark(image)[0] and "watermark" not in image.text


@pytest.mark.parametrize(
    ("meta", "match"),
    [({"prompt": "a red\x00circle"}, r"metadata\['prompt'\].*NUL"),
     ({"prompt": "a \udcff circle"}, r"metadata\['prompt'\].*surrogate"),
     ({"bad\x00key": "x"}, "keyword")],
    ids=["NUL", "surrogate", "key"],
)  # fmt: skip
def test_text_a_png_chunk_cannot_hold_is_refused(meta, match):
    with pytest.raises(InvalidArgumentError, match=match):
        png_bytes(torch.zeros(3, 4, 4), meta)


def test_save_images_writes_all_or_nothing_and_never_replaces_a_file(tmp_path):
    images = torch.zeros(2, 3, 4, 4)
    meta = [{"seed": 0}, {"seed": 1}]
    (tmp_path / "x-1.png").write_bytes(b"someone's file")
    with pytest.raises(FileExistsError):
        save_images(images, tmp_path / "x.png", meta)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x-1.png"]
    assert (tmp_path / "x-1.png").read_bytes() == b"someone's file"
    paths = save_images(images, tmp_path / "x.png", meta, overwrite=True)
    assert [p.name for p in paths] == ["x-0.png", "x-1.png", "x-grid.png"]
    assert read_png_metadata(tmp_path / "x-1.png")["seed"] == "1"


def test_provenance_is_the_same_chunks_for_every_writer(tmp_path):
    import json

    from openimagen.cascade import SamplingConfig
    from openimagen.images import provenance, read_png_metadata
    from openimagen.version import __version__

    sampling = [SamplingConfig(steps=3), SamplingConfig(guidance_weight=2.5)]
    meta = provenance("a red circle", 7, "tiny", sampling)
    assert list(meta) == ["prompt", "seed", "model_id", "sampling", "software"]
    path = save_png(torch.zeros(3, 8, 8), tmp_path / "a.png", meta)
    chunks = read_png_metadata(path)
    assert chunks["seed"] == "7" and chunks["model_id"] == "tiny"
    assert json.loads(chunks["sampling"]) == [s.to_dict() for s in sampling]
    assert chunks["software"] == f"openimagen {__version__}"
    # the server used to write the seed as a string: the chunk is the same either way
    as_text = save_png(torch.zeros(3, 8, 8), tmp_path / "b.png", {**meta, "seed": "7"})
    assert as_text.read_bytes() == path.read_bytes()


def test_save_images_signs_every_file_and_a_signing_failure_writes_none(tmp_path):
    from openimagen.provenance import ContentCredentials, content_credentials
    from openimagen.provenance import development_credentials as dev

    signer = ContentCredentials(dev(tmp_path / "c2pa"), model_name="tiny")
    images = torch.stack([noise_image(seed=i) for i in range(2)])  # [2, 3, 64, 64]
    meta = [{"prompt": "a", "seed": 0}, {"prompt": "a", "seed": 1}]
    paths = save_images(images, tmp_path / "s.png", meta, credentials=signer)
    assert [p.name for p in paths] == ["s-0.png", "s-1.png", "s-grid.png"]
    for path in paths:  # the grid too
        assert content_credentials(path.read_bytes())["state"] == "valid", path.name
        assert read_png_metadata(path)["prompt"] == "a"

    class FailsOnTheGrid:
        def sign_png(self, data, metadata):
            if "seeds" in metadata:
                raise InvalidArgumentError("c2pa signing", "test", "a signer that works")
            return signer.sign_png(data, metadata)

    with pytest.raises(InvalidArgumentError, match="c2pa signing"):
        save_images(images, tmp_path / "f.png", meta, credentials=FailsOnTheGrid())
    assert not list(tmp_path.glob("f*"))  # every file's bytes are signed before any is written
