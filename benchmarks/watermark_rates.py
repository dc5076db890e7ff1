"""Watermark detection and false-positive rates on procedurally generated test images.

    python benchmarks/watermark_rates.py --count 200 --size 128 --out benchmarks/results/watermark_128.json

For each of ``count`` images (half "natural-ish" 1/f colour noise fields, half renders of
the shapes world, openimagen's data set), it measures the detector's
z-score on: the unmarked image (false positives), the marked image, the marked image after
PNG re-encoding, and after JPEG quality 90 (and 75 and 50, for reference). It also reports
the PSNR of the mark. Images are drawn from a fixed numpy seed, so the numbers reproduce.

The edits of ``ATTACKS`` (crops, resizes) are measured on the marked images too: what the
mark does *not* survive is stated from these numbers in docs/serving.md.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import time

import numpy as np
from PIL import Image

from openimagen.data.shapes import ShapesWorld
from openimagen.fileio import atomic_write_json
from openimagen.images import to_pil
from openimagen.watermark import THRESHOLD, embed_watermark, watermark_score


def natural_ish(rng: np.random.Generator, size: int) -> Image.Image:
    """A colour field with a 1/f^a power spectrum (a in [1.5, 2.5]), like natural images."""
    freq = np.fft.fftfreq(size)
    radius = np.sqrt(freq[:, None] ** 2 + freq[None, :] ** 2)  # [S, S]
    radius[0, 0] = 1.0
    exponent = rng.uniform(1.5, 2.5)
    channels = []
    for _ in range(3):
        noise = rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))
        spectrum = noise / radius ** (exponent / 2)  # amplitude ~ 1/f^(a/2): power ~ 1/f^a
        spectrum[0, 0] = 0.0
        field = np.real(np.fft.ifft2(spectrum))  # [S, S]
        channels.append(field / (field.std() + 1e-12))
    mix = rng.normal(size=(3, 3)) * 0.5 + np.eye(3)  # correlated colour channels
    img = np.einsum("cd,dhw->hwc", mix, np.stack(channels))  # [S, S, 3]
    img = 128 + rng.uniform(25, 60) * img / (img.std() + 1e-12) + rng.uniform(-40, 40, size=3)
    return Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), mode="RGB")


def test_images(count: int, size: int, seed: int = 2026) -> list[Image.Image]:
    """Even indices: natural-ish fields; odd: shapes-world renders (the data set's own renderer)."""
    rng = np.random.default_rng(seed)
    world = ShapesWorld(resolution=size, split="train", seed=seed)
    return [
        natural_ish(rng, size) if i % 2 == 0 else to_pil(world[i]["image"]) for i in range(count)
    ]


def reencode(image: Image.Image, fmt: str, **options) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def crop(image: Image.Image, left: int, top: int, width: int, height: int) -> Image.Image:
    return image.crop((left, top, left + width, top + height))


def resize(image: Image.Image, factor: float) -> Image.Image:
    size = max(1, round(image.width * factor)), max(1, round(image.height * factor))
    return image.resize(size, Image.Resampling.BICUBIC)


def _three_quarters(image: Image.Image) -> tuple[int, int]:
    return image.width * 3 // 4, image.height * 3 // 4


# Edits a marked image may go through after it leaves us; name -> edit.
ATTACKS = {
    # 75% of each side, kept where it was: top-left corner (grid-aligned), centre (aligned
    # when the side is a multiple of 32), and offset by (3, 5) pixels (not aligned)
    "crop75_corner": lambda im: crop(im, 0, 0, *_three_quarters(im)),
    "crop75_centre": lambda im: crop(im, im.width // 8, im.height // 8, *_three_quarters(im)),
    "crop75_offset": lambda im: crop(im, 3, 5, *_three_quarters(im)),
    # one 8-pixel block row and column removed: on the top/left (the grid shifts by exactly
    # one block) or on the bottom/right (the remaining blocks are untouched)
    "crop8_top_left": lambda im: crop(im, 8, 8, im.width - 8, im.height - 8),
    "crop8_bottom_right": lambda im: crop(im, 0, 0, im.width - 8, im.height - 8),
    # a 75% crop scaled back to the original size (same block count, moved content)
    "crop75_resized_back": lambda im: resize(crop(im, 0, 0, *_three_quarters(im)), 4 / 3),
    "resize50": lambda im: resize(im, 0.5),
    "resize90": lambda im: resize(im, 0.9),
    "resize200": lambda im: resize(im, 2.0),
    # same size and block grid, content moved
    "rotate90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "mirror": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "jpeg50": lambda im: reencode(im, "JPEG", quality=50),
}


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mse = float(np.mean(diff**2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def measure(count: int, size: int, seed: int = 2026) -> dict:
    names = ("unmarked", "unmarked_jpeg90", "marked", "png", "jpeg90", "jpeg75", *ATTACKS)
    scores: dict[str, list[float]] = {k: [] for k in names}
    psnrs = []
    start = time.perf_counter()
    for image in test_images(count, size, seed):
        marked = embed_watermark(image)
        psnrs.append(psnr(image, marked))
        scores["unmarked"].append(watermark_score(image))
        scores["unmarked_jpeg90"].append(watermark_score(reencode(image, "JPEG", quality=90)))
        scores["marked"].append(watermark_score(marked))
        scores["png"].append(watermark_score(reencode(marked, "PNG")))
        scores["jpeg90"].append(watermark_score(reencode(marked, "JPEG", quality=90)))
        scores["jpeg75"].append(watermark_score(reencode(marked, "JPEG", quality=75)))
        for name, attack in ATTACKS.items():
            scores[name].append(watermark_score(attack(marked)))
    result: dict = {
        "count": count,
        "size": size,
        "seed": seed,
        "threshold": THRESHOLD,
        "seconds": round(time.perf_counter() - start, 2),
        "psnr_db_mean": round(float(np.mean(psnrs)), 2),
        "psnr_db_min": round(float(np.min(psnrs)), 2),
    }
    kinds = np.arange(count) % 2  # 0 = natural-ish, 1 = shapes world
    for name, values in scores.items():
        v = np.array(values)
        result[name] = {
            "detected_rate": float(np.mean(v >= THRESHOLD)),
            "detected_rate_natural_ish": float(np.mean(v[kinds == 0] >= THRESHOLD)),
            "detected_rate_shapes_world": float(np.mean(v[kinds == 1] >= THRESHOLD)),
            "z_min": round(float(v.min()), 2),
            "z_mean": round(float(v.mean()), 2),
            "z_max": round(float(v.max()), 2),
            "z_std": round(float(v.std()), 2),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--count", type=int, default=200, help="number of test images (default 200)"
    )
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=2026, help="numpy seed of the images")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args()
    result = measure(args.count, args.size, args.seed)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
