"""Invisible watermark: detected after PNG/JPEG re-encoding, silent on unmarked images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from openimagen.errors import InvalidArgumentError
from openimagen.watermark import (
    MIN_SIZE,
    THRESHOLD,
    detect_watermark,
    embed_watermark,
    watermark_score,
)


def smooth_image(rng: np.random.Generator, size: int) -> Image.Image:
    """Low-pass colour noise (blurred by upsampling), a stand-in for natural texture."""
    small = rng.integers(0, 256, size=(size // 8, size // 8, 3), dtype=np.uint8)
    base = Image.fromarray(small).resize((size, size), Image.BICUBIC)
    grain = rng.normal(0, 6, size=(size, size, 3))
    return Image.fromarray(np.clip(np.asarray(base) + grain, 0, 255).astype(np.uint8))


def shapes_image(rng: np.random.Generator, size: int) -> Image.Image:
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x, y = rng.uniform(0, size * 0.6, 2)
        r = size * 0.2
        draw.ellipse([x, y, x + r, y + r], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


def images(count: int, size: int = 128, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [(smooth_image if i % 2 else shapes_image)(rng, size) for i in range(count)]


def reencode(image: Image.Image, fmt: str, **options) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return 10 * np.log10(255**2 / np.mean(diff**2))


@pytest.mark.parametrize("fmt,options", [("PNG", {}), ("JPEG", {"quality": 90})])
def test_mark_survives_reencoding_at_128px(fmt, options):
    for image in images(10):
        marked = reencode(embed_watermark(image), fmt, **options)
        found, score = detect_watermark(marked)
        assert found, f"{fmt} {options}: z={score:.2f} below the threshold {THRESHOLD}"


def test_unmarked_images_are_not_detected_and_scores_look_like_z_scores():
    scores = [watermark_score(im) for im in images(40, seed=1)]
    scores += [watermark_score(reencode(im, "JPEG", quality=90)) for im in images(20, seed=2)]
    assert max(scores) < THRESHOLD
    # for an unmarked image the score is a z-score: mean 0, standard deviation 1
    assert abs(float(np.mean(scores))) < 0.5
    assert 0.6 < float(np.std(scores)) < 1.4


def test_detector_keys_on_the_pattern_not_on_any_perturbation():
    rng = np.random.default_rng(3)
    for image in images(6, seed=4):
        marked = np.asarray(embed_watermark(image), dtype=np.float64)
        original = np.asarray(image, dtype=np.float64)
        # random noise with the same per-pixel energy as the mark is not a mark
        sigma = float(np.std(marked - original))
        noisy = np.clip(np.rint(original + rng.normal(0, sigma, original.shape)), 0, 255)
        assert not detect_watermark(Image.fromarray(noisy.astype(np.uint8)))[0]
        # and the mark is tied to its position: a mirrored marked image is not marked
        mirrored = Image.fromarray(marked.astype(np.uint8)).transpose(Image.FLIP_LEFT_RIGHT)
        assert not detect_watermark(mirrored)[0]


def test_mark_is_invisible_enough():
    for image in images(6, seed=5):
        marked = embed_watermark(image)
        assert marked.size == image.size and marked.mode == "RGB"
        assert psnr(image, marked) > 30.0
        # the change is added equally to R, G and B: colour (chroma) is untouched
        diff = np.asarray(marked, dtype=np.int16) - np.asarray(image, dtype=np.int16)
        unclipped = (np.asarray(image) > 40).all(-1) & (np.asarray(image) < 215).all(-1)
        assert np.array_equal(diff[unclipped][:, 0], diff[unclipped][:, 1])


def test_odd_sizes_and_minimum_size():
    rng = np.random.default_rng(6)
    odd = shapes_image(rng, 130).crop((0, 0, 130, 100))  # not a multiple of 8
    assert detect_watermark(reencode(embed_watermark(odd), "PNG"))[0]
    tiny = shapes_image(rng, MIN_SIZE - 8)
    assert np.array_equal(np.asarray(embed_watermark(tiny)), np.asarray(tiny))
    assert detect_watermark(tiny) == (False, 0.0)
    flat = Image.new("RGB", (64, 64), (10, 200, 30))
    assert detect_watermark(flat) == (False, 0.0)
    assert detect_watermark(embed_watermark(flat))[0]


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(InvalidArgumentError, match="strength"):
        embed_watermark(Image.new("RGB", (64, 64)), strength=0)
    with pytest.raises(InvalidArgumentError, match="image"):
        detect_watermark(np.zeros((64, 64, 3)))


def test_verify_image_reads_score_and_chunks(tmp_path):
    from openimagen.images import save_png
    from openimagen.watermark import verify_image

    image = images(1, seed=7)[0]
    marked = verify_image(save_png(image, tmp_path / "m.png", {"model_id": "tiny"}))
    assert marked["marked"] and marked["score"] >= THRESHOLD and marked["markable"]
    assert marked["metadata"]["model_id"] == "tiny" and marked["size"] == (128, 128)
    image.save(tmp_path / "plain.png")
    plain = verify_image(tmp_path / "plain.png")
    assert not plain["marked"] and plain["metadata"] == {}
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(InvalidArgumentError, match="IMAGE"):
        verify_image(tmp_path / "broken.png")


@pytest.mark.parametrize(
    "edit",
    [
        lambda im: im.crop((0, 0, 96, 96)),  # 75%, top-left corner: on the block grid
        lambda im: im.crop((16, 16, 112, 112)),  # 75%, centre: on the block grid too
        lambda im: im.crop((0, 0, 120, 120)),  # one block row and column off the far edges
        lambda im: im.resize((64, 64), Image.BICUBIC),
    ],
    ids=["crop corner", "crop centre", "crop one block", "resize 50%"],
)
def test_the_mark_survives_no_crop_or_resize_even_on_the_block_grid(edit):
    """What docs/serving.md states: the pattern is drawn for the image's block-grid size, so
    any edit that changes the size changes the pattern; the edited images score like
    unmarked ones. (The JPEG q75 survival beside it is measured in benchmarks/.)"""
    marked = [embed_watermark(image) for image in images(8)]
    assert all(detect_watermark(m)[0] for m in marked)
    scores = [watermark_score(edit(m)) for m in marked]
    assert max(scores) < THRESHOLD and abs(np.mean(scores)) < 2.0
