"""Export a shapes-world split to an image folder the generic data readers can read.

Layout of ``out_dir``: ``00000.png`` + ``00000.txt`` (the caption) per sample, and
``manifest.jsonl`` with one ``{"image", "caption", "spec"}`` object per line (paths relative
to the manifest). Every file is written atomically; the manifest is written last, so a
folder with a manifest is complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tqdm.auto import tqdm

from openimagen.data.shapes import ShapesConfig, ShapesWorld
from openimagen.errors import InvalidArgumentError
from openimagen.fileio import atomic_write
from openimagen.images import to_pil

MANIFEST_NAME = "manifest.jsonl"


def export_split(
    config: ShapesConfig | None,
    split: str,
    out_dir: str | os.PathLike,
    n: int,
    resolution: int = 32,
    seed: int | None = None,
    *,
    start: int = 0,
    progress: bool = True,
) -> Path:
    """Render samples ``start .. start + n - 1`` of ``split``; returns the manifest's path.

    The images are the same as ``ShapesWorld(config, resolution, split, seed)[i]``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidArgumentError("n", n, "a positive integer")
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise InvalidArgumentError("start", start, "a non-negative integer")
    world = ShapesWorld(config, resolution, split, seed, length=start + n)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(start + n - 1)))
    lines = []
    for index in tqdm(range(start, start + n), disable=not progress, desc=f"export {split}"):
        item = world[index]
        stem = f"{index:0{width}d}"
        with atomic_write(out_dir / f"{stem}.png", "wb") as handle:
            to_pil(item["image"]).save(handle, format="PNG")
        with atomic_write(out_dir / f"{stem}.txt", "w") as handle:
            handle.write(item["caption"] + "\n")
        record = {
            "image": f"{stem}.png",
            "caption": item["caption"],
            "spec": item["spec"].to_dict(),
        }
        lines.append(json.dumps(record, sort_keys=True))
    manifest = out_dir / MANIFEST_NAME
    with atomic_write(manifest, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return manifest
