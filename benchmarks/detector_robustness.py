"""How well the ShapeBench detector reads rendered scenes, clean and corrupted.

Renders N shapes-world specs (all three splits, 1-4 objects, relations) at each
resolution, corrupts them with additive Gaussian noise or Gaussian blur, and scores each
image against its own spec. A perfect detector scores 100% on clean renders; the curve
over corruption strength shows how gracefully it degrades. Usage:

    python benchmarks/detector_robustness.py --num-specs 2000 --out robustness.json

Prints a markdown table (the one in docs/shapebench.md) and writes the JSON if --out.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy import ndimage

from openimagen.data.shapes import SPLITS, ShapesWorld, render_layout
from openimagen.eval.shapebench import score_image, summarize


def corrupt(image: np.ndarray, kind: str, level: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` [H, W, 3] in [0, 1]; noise level = std in [0, 1] units, blur level = sigma in px."""
    if kind == "noise" and level > 0:
        return np.clip(image + rng.normal(0.0, level, image.shape), 0, 1).astype(np.float32)
    if kind == "blur" and level > 0:
        return ndimage.gaussian_filter(image, sigma=(level, level, 0), mode="nearest")
    return image


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--num-specs", type=int, default=2000, help="specs per setting (default 2000)"
    )
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.15, 0.2, 0.3])
    parser.add_argument("--blur", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()

    settings = (
        [("clean", 0.0)] + [("noise", s) for s in args.noise] + [("blur", s) for s in args.blur]
    )
    rows = []
    for resolution in args.resolutions:
        worlds = [ShapesWorld(resolution=resolution, split=s, seed=args.seed) for s in SPLITS]
        samples = [worlds[i % 3].sample(i // 3) for i in range(args.num_specs)]
        clean = [render_layout(layout, resolution) for _, layout in samples]
        for kind, level in settings:
            rng = np.random.default_rng([args.seed, resolution, int(level * 1000)])
            start = time.perf_counter()
            results = [
                score_image(corrupt(img, kind, level, rng), spec)
                for img, (spec, _) in zip(clean, samples, strict=True)
            ]
            summary = summarize(results)
            attrs = {k: v["accuracy"] for k, v in summary["attributes"].items()}
            row = {
                "resolution": resolution, "corruption": kind, "level": level,
                "all_correct": summary["all_correct"]["accuracy"],
                "all_correct_ci95": summary["all_correct"]["ci95"], "attributes": attrs,
                "num_specs": args.num_specs, "seconds": round(time.perf_counter() - start, 2),
            }  # fmt: skip
            rows.append(row)

    unit = {"clean": "", "noise": "std", "blur": "sigma px"}
    print("| res | corruption | all correct [95% CI] | count | color | shape | size | relation |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        a, (lo, hi) = r["attributes"], r["all_correct_ci95"]
        setting = (
            r["corruption"]
            if r["corruption"] == "clean"
            else f"{r['corruption']} {unit[r['corruption']]} {r['level']:g}"
        )
        cells = " | ".join(
            f"{100 * a[k]:.1f}" for k in ("count", "color", "shape", "size", "relation")
        )
        print(
            f"| {r['resolution']} | {setting} | {100 * r['all_correct']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] | {cells} |"
        )
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
