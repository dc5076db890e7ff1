"""What Content Credentials (C2PA signing) add to each PNG: time and bytes.

    OMP_NUM_THREADS=1 python benchmarks/c2pa_signing.py --repeats 50 --out /tmp/c2pa.json

For each image size it encodes an image with :func:`openimagen.images.png_bytes`
(watermark and text chunks, as ``generate`` and ``serve`` do), then signs those bytes
(``ContentCredentials.sign_png``, the step ``png_bytes(..., credentials=...)`` adds),
``repeats`` times each, and reports the median time of each, the bytes the manifest adds,
and the median time to read and judge the manifest (``openimagen verify``). Images: a flat shapes-world-like render and 1/f colour noise (the
PNG of noise is large, so the data hash has the most to read). Once-per-process costs are
measured too: making the development certificate (first use only), loading credentials and
creating the signer. Signing uses the development certificate in a temporary config
directory and no timestamp authority (no network).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw

from openimagen.fileio import atomic_write_json
from openimagen.images import png_bytes
from openimagen.provenance import ContentCredentials, content_credentials, resolve_credentials


def flat(size: int) -> Image.Image:
    image = Image.new("RGB", (size, size), (235, 235, 230))
    draw = ImageDraw.Draw(image)
    draw.ellipse((size // 8, size // 8, size // 2, size // 2), fill=(200, 30, 40))
    draw.rectangle((size // 2, size // 2, size * 7 // 8, size * 7 // 8), fill=(30, 60, 200))
    return image


def noise(size: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    freq = np.sqrt(np.add.outer(np.fft.fftfreq(size) ** 2, np.fft.fftfreq(size) ** 2))
    freq[0, 0] = 1.0
    channels = []
    for _ in range(3):
        spectrum = np.fft.fft2(rng.standard_normal((size, size))) / freq**2.0
        field = np.real(np.fft.ifft2(spectrum))
        channels.append((field - field.min()) / (np.ptp(field) + 1e-9) * 255)
    return Image.fromarray(np.stack(channels, -1).astype(np.uint8))


def median_ms(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 1024])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    meta = {"prompt": "two red circles above a blue square", "seed": 7, "model_id": "bench"}
    with tempfile.TemporaryDirectory() as home:
        environ = {"XDG_CONFIG_HOME": home}
        first_ms, _ = median_ms(lambda: resolve_credentials(environ=environ), 1)
        load_ms, creds = median_ms(lambda: resolve_credentials(environ=environ), 5)
        signer_ms, signer = median_ms(
            lambda: ContentCredentials(creds, model_name="bench", model_version="sha256:0"), 5
        )
        rows = []
        for size in args.sizes:
            for kind, image in (("flat", flat(size)), ("noise", noise(size))):
                plain_ms, plain = median_ms(lambda i=image: png_bytes(i, meta), args.repeats)
                sign_ms, signed = median_ms(lambda p=plain: signer.sign_png(p, meta), args.repeats)
                read_ms, report = median_ms(lambda s=signed: content_credentials(s), args.repeats)
                assert report["state"] == "valid", report
                rows.append({
                    "size": size, "image": kind, "png_bytes": len(plain),
                    "signed_bytes": len(signed), "added_bytes": len(signed) - len(plain),
                    "encode_ms": round(plain_ms, 2), "sign_ms": round(sign_ms, 2),
                    "verify_ms": round(read_ms, 2),
                })  # fmt: skip
    result = {
        "repeats": args.repeats,
        "once": {
            "make_dev_certificate_ms": round(first_ms, 1),
            "load_credentials_ms": round(load_ms, 2),
            "create_signer_ms": round(signer_ms, 2),
        },  # fmt: skip
        "per_image": rows,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
