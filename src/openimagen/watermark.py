"""An invisible watermark for generated images: spread spectrum in block-DCT mid frequencies.

Why our own method: the maintained library (``invisible-watermark``) refuses images smaller
than 256x256, and the shapes-world models make 32..128 px images.

Method (classic additive spread spectrum, Cox et al. 1997, "Secure spread spectrum
watermarking for multimedia", applied in the 8x8 block DCT that JPEG itself uses):

1. Luma ``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601, the JPEG/JFIF luma) is cut into
   8x8 blocks aligned to the top-left corner (the JPEG grid), each transformed by an
   orthonormal 2-D DCT-II.
2. In every block, the :data:`BAND` coefficients with ``2 <= u + v <= 5`` (low-mid
   frequencies: JPEG quantizes them finely, and they are not the flat DC term) get
   ``strength * p`` added, where ``p`` is a +-1 pattern drawn from a fixed key
   (:data:`KEY`) for the image's block grid.
3. The inverse DCT of that change is added equally to R, G and B (which changes luma by
   exactly that amount and leaves the colour untouched), then rounded to 8 bits.

Detection takes the same coefficients ``c`` of the image to test and computes the
normalized correlation ``z = sum(c * p) / sqrt(sum(c ** 2))``. For an unmarked image ``p`` is
independent of ``c``, so over the key ``z`` has mean 0 and variance 1 whatever the image
(a z-score); a marked image adds about ``strength * sqrt(N) / rms(c)`` with N the number of
coefficients (18 per block). An image is called marked when ``z >= THRESHOLD``; the
threshold 5 is 5 standard deviations of the null distribution (one-sided Gaussian tail
2.9e-7; the null scores are measured in benchmarks/watermark_rates.py, see docs/serving.md).

What it survives: lossless re-encoding, JPEG (measured down to quality 75), small colour
changes. What it does not survive: any crop or resize, even one on the 8x8 block grid (the
pattern is drawn for the grid's size, so another size means another pattern), rotation,
mirroring (measured in benchmarks/watermark_rates.py, see docs/serving.md). Minimum size: 32x32 (16 blocks); smaller images are not marked (``embed`` returns them
unchanged with a logged warning, ``detect`` reports (False, 0.0)).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from openimagen.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

# The fixed key: the seed of the +-1 pattern. Public on purpose (anyone can verify a mark;
# this is a provenance signal, not a security feature).
KEY = 0x0B1A6E5
# The method's name, written into a marked PNG's ``watermark`` text chunk so a reader knows
# which detector to run; change it with any change to KEY, BAND or the detector.
METHOD = "openimagen-dct8-v1"
BLOCK = 8
MIN_SIZE = 32
# z-score above which an image is reported as marked (see the module docstring).
THRESHOLD = 5.0
# Amplitude of the mark per DCT coefficient, in 8-bit pixel units (orthonormal DCT, so the
# per-pixel RMS change is strength * sqrt(18 / 64) ~= 0.53 * strength).
DEFAULT_STRENGTH = 4.0
# Blocks whose band RMS exceeds TEXTURE_REF get a proportionally stronger mark, at most
# MAX_BOOST times DEFAULT_STRENGTH (texture masks it).
TEXTURE_REF = 16.0
MAX_BOOST = 4.0
# (u, v) positions of the marked coefficients inside an 8x8 block: 2 <= u + v <= 5.
BAND: tuple[tuple[int, int], ...] = tuple(
    (u, v) for s in range(2, 6) for u in range(BLOCK) for v in range(BLOCK) if u + v == s
)
_LUMA = np.array([0.299, 0.587, 0.114])


def _dct_matrix(n: int = BLOCK) -> np.ndarray:
    """Orthonormal DCT-II matrix D, so that coefficients = D @ block @ D.T."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d  # [n, n]


_D = _dct_matrix()
_U = np.array([u for u, _ in BAND])
_V = np.array([v for _, v in BAND])


def _pattern(blocks_h: int, blocks_w: int) -> np.ndarray:
    """The keyed +-1 pattern for a block grid: [blocks_h, blocks_w, len(BAND)]."""
    rng = np.random.default_rng([KEY, blocks_h, blocks_w])
    return rng.choice(np.array([-1.0, 1.0]), size=(blocks_h, blocks_w, len(BAND)))


def _grid(height: int, width: int) -> tuple[int, int]:
    return height // BLOCK, width // BLOCK


def _rgb_array(image: Image.Image) -> np.ndarray:
    if not isinstance(image, Image.Image):
        raise InvalidArgumentError("image", type(image).__name__, "a PIL.Image.Image")
    return np.asarray(image.convert("RGB"), dtype=np.float64)  # [H, W, 3]


def _band_coefficients(luma: np.ndarray, bh: int, bw: int) -> np.ndarray:
    """Block-DCT coefficients of the band: [bh, bw, len(BAND)]."""
    blocks = luma[: bh * BLOCK, : bw * BLOCK].reshape(bh, BLOCK, bw, BLOCK).transpose(0, 2, 1, 3)
    coeffs = np.einsum("ki,abij,lj->abkl", _D, blocks, _D)  # [bh, bw, 8, 8]
    return coeffs[:, :, _U, _V]


def is_markable(image: Image.Image) -> bool:
    """Whether the image is large enough to carry the mark (both sides >= MIN_SIZE)."""
    return min(image.size) >= MIN_SIZE


def embed_watermark(image: Image.Image, strength: float = DEFAULT_STRENGTH) -> Image.Image:
    """A copy of ``image`` (RGB) with the invisible mark added.

    Images smaller than :data:`MIN_SIZE` on a side are returned unchanged (converted to RGB)
    with a warning: they have too few blocks for a reliable detection.
    """
    if not strength > 0:
        raise InvalidArgumentError("strength", strength, "a number > 0")
    rgb = _rgb_array(image)
    height, width = rgb.shape[:2]
    if not is_markable(image):
        logger.warning(
            "image %dx%d is below the %d px minimum; not watermarked", width, height, MIN_SIZE
        )
        return image.convert("RGB")
    bh, bw = _grid(height, width)
    host = _band_coefficients(rgb @ _LUMA, bh, bw)  # [bh, bw, K]
    # Texture masking: a textured block hides a stronger mark (and needs one to be detected).
    block_rms = np.sqrt(np.mean(host**2, axis=-1, keepdims=True))  # [bh, bw, 1]
    amplitude = strength * np.clip(block_rms / TEXTURE_REF, 1.0, MAX_BOOST)  # [bh, bw, 1]
    delta = np.zeros((bh, bw, BLOCK, BLOCK))  # [bh, bw, 8, 8] in the DCT domain
    delta[:, :, _U, _V] = amplitude * _pattern(bh, bw)
    spatial = np.einsum("ki,abkl,lj->abij", _D, delta, _D)  # inverse DCT, [bh, bw, 8, 8]
    spatial = spatial.transpose(0, 2, 1, 3).reshape(bh * BLOCK, bw * BLOCK)  # [H', W']
    out = rgb.copy()
    out[: bh * BLOCK, : bw * BLOCK] += spatial[:, :, None]  # same change on R, G, B
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), mode="RGB")


def watermark_score(image: Image.Image) -> float:
    """The detection z-score (about N(0, 1) for unmarked images); 0.0 below MIN_SIZE."""
    rgb = _rgb_array(image)
    if not is_markable(image):
        return 0.0
    luma = rgb @ _LUMA  # [H, W]
    bh, bw = _grid(*luma.shape)
    coeffs = _band_coefficients(luma, bh, bw)  # [bh, bw, K]
    coeffs[np.abs(coeffs) < 1e-9] = 0.0  # float round-off of flat blocks is not signal
    # Weight each block by 1/its RMS so textured blocks do not drown the flat ones; the
    # weights depend only on |coefficients|, so for an unmarked image (pattern independent
    # of the image) the score is still a z-score: mean 0, variance 1.
    weights = 1.0 / np.sqrt(np.mean(coeffs**2, axis=-1, keepdims=True) + 1.0)  # [bh, bw, 1]
    weighted = weights * coeffs
    energy = float(np.sqrt(np.sum(weighted**2)))
    if energy == 0.0:  # a perfectly flat image carries no mark
        return 0.0
    return float(np.sum(weighted * _pattern(bh, bw)) / energy)


def detect_watermark(image: Image.Image, threshold: float = THRESHOLD) -> tuple[bool, float]:
    """(marked, z-score): ``marked`` is ``score >= threshold``."""
    score = watermark_score(image)
    return score >= threshold, score


def verify_image(path: str | os.PathLike) -> dict[str, Any]:
    """Watermark and provenance chunks of an image file: marked, score, threshold, metadata."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            metadata = {
                k: v for k, v in (getattr(image, "text", None) or {}).items() if isinstance(v, str)
            }
            marked, score = detect_watermark(image)
            size = image.size
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidArgumentError(
            "IMAGE", str(path), "a readable image file (PNG, JPEG, WebP...)", f"({exc})"
        ) from exc
    return {
        "path": str(path),
        "marked": marked,
        "score": score,
        "threshold": THRESHOLD,
        "size": size,
        "markable": min(size) >= MIN_SIZE,
        "metadata": metadata,
    }


__all__ = [
    "BAND",
    "DEFAULT_STRENGTH",
    "KEY",
    "METHOD",
    "MIN_SIZE",
    "THRESHOLD",
    "detect_watermark",
    "embed_watermark",
    "is_markable",
    "verify_image",
    "watermark_score",
]
