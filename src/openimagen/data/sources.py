"""Captioned-image data sources behind one interface, for training any stage.

A :class:`DataSource` is random access: ``len(source)`` items, ``source.read(i)`` gives
``(image, caption)`` with the image as a PIL image or a [3, H, W] tensor in [-1, 1]. Four
kinds exist:

* ``shapes``: the procedural shapes world (``openimagen.data.shapes``), seeded, effectively
  infinite (item i depends only on the seed and i);
* ``folder``: a directory tree of images, each with a ``.txt`` caption of the same stem;
* ``jsonl``: a manifest, one ``{"image": path, "caption": text}`` object per line, paths
  relative to the manifest;
* ``webdataset``: WebDataset tar shards (LAION style): files ``KEY.jpg``/``.png``/``.webp``
  with ``KEY.txt`` (or ``KEY.json`` holding ``"caption"``) in the same tar.

Training reads by *global sample index*: :func:`item_index` maps it to an item through a
per-epoch permutation seeded by ``(seed, epoch)``, so the position in the data is one integer
and a resumed run reads exactly the items the uninterrupted run would have read.
:func:`prepare_image` resizes (shorter side to ``image_size``) and crops to the training
resolution; SR stages downsample that same crop for their low-res input.
"""

from __future__ import annotations

import glob
import io
import json
import logging
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from openimagen.errors import ConfigError, InvalidArgumentError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SHAPES_LENGTH = 2**31 - 1  # the shapes world is procedural: any index is an item


class DataSource(Protocol):
    """Random-access captioned images."""

    def __len__(self) -> int: ...

    def read(self, index: int) -> tuple[Any, str]:
        """Item ``index``: (PIL image or [3, H, W] tensor in [-1, 1], caption)."""
        ...


# -- the four sources -------------------------------------------------------------------------
class ShapesSource:
    """The shapes world rendered at ``resolution``; item i = ``ShapesWorld(...)[i]``."""

    def __init__(self, shapes: dict[str, Any], split: str, seed: int, resolution: int):
        from openimagen.data.shapes import ShapesConfig, ShapesWorld

        config = ShapesConfig.from_dict({**shapes, "seed": seed}, where="data.shapes")
        self.world = ShapesWorld(config, resolution=resolution, split=split, length=SHAPES_LENGTH)

    def __len__(self) -> int:
        return len(self.world)

    def read(self, index: int) -> tuple[torch.Tensor, str]:
        item = self.world[index]
        return item["image"], item["caption"]  # [3, R, R]


class FolderSource:
    """Images under ``root`` (recursively), each captioned by ``<stem>.txt`` beside it."""

    def __init__(self, root: Path):
        if not root.is_dir():
            raise ConfigError(f"data.path={str(root)!r}: not a directory (data.source='folder')")
        images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        self.items = [(p, p.with_suffix(".txt")) for p in images if p.with_suffix(".txt").is_file()]
        skipped = len(images) - len(self.items)
        if skipped:
            logger.warning("%s: %d images without a .txt caption are skipped", root, skipped)
        if not self.items:
            raise ConfigError(
                f"data.path={str(root)!r}: no image with a .txt caption found "
                f"(expected e.g. cat.png + cat.txt; image types {', '.join(IMAGE_EXTENSIONS)})"
            )

    def __len__(self) -> int:
        return len(self.items)

    def read(self, index: int) -> tuple[Any, str]:
        image_path, caption_path = self.items[index]
        return _open_image(image_path.read_bytes(), image_path), _read_caption(caption_path)


class JsonlSource:
    """A JSONL manifest of ``{"image": path, "caption": text}`` lines."""

    def __init__(self, manifest: Path):
        if not manifest.is_file():
            raise ConfigError(f"data.path={str(manifest)!r}: manifest file not found")
        self.items: list[tuple[Path, str]] = []
        with manifest.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    image, caption = row["image"], row.get("caption", row.get("text"))
                except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                    raise ConfigError(
                        f"{manifest}:{number}: expected a JSON object with 'image' and "
                        f"'caption' keys ({exc})"
                    ) from exc
                if not isinstance(image, str) or not isinstance(caption, str):
                    raise ConfigError(f"{manifest}:{number}: 'image' and 'caption' must be strings")
                path = Path(image)
                self.items.append((path if path.is_absolute() else manifest.parent / path, caption))
        if not self.items:
            raise ConfigError(f"data.path={str(manifest)!r}: the manifest lists no images")
        missing = next((p for p, _ in self.items if not p.is_file()), None)
        if missing is not None:
            raise ConfigError(f"data.path={str(manifest)!r}: listed image {missing} not found")

    def __len__(self) -> int:
        return len(self.items)

    def read(self, index: int) -> tuple[Any, str]:
        path, caption = self.items[index]
        return _open_image(path.read_bytes(), path), caption


class WebDatasetSource:
    """WebDataset tar shards; the shards are indexed once (member offsets), then read by seek."""

    def __init__(self, shards: Sequence[Path]):
        if not shards:
            raise ConfigError("data.path: no .tar shard found (data.source='webdataset')")
        # key -> {"image": (shard, offset, size, name), "caption": str}
        self.items: list[tuple[Path, int, int, str, str]] = []
        for shard in shards:
            samples: dict[str, dict[str, Any]] = {}
            try:
                with tarfile.open(shard, "r:") as tar:
                    for member in tar:
                        if not member.isfile():
                            continue
                        directory, _, base = member.name.rpartition("/")
                        stem, dot, ext = base.partition(".")
                        key = f"{directory}/{stem}" if directory else stem
                        ext = "." + ext.lower() if dot else ""
                        sample = samples.setdefault(key, {})
                        if ext in IMAGE_EXTENSIONS:
                            sample["image"] = (member.offset_data, member.size, member.name)
                        elif ext == ".txt":
                            sample["caption"] = tar.extractfile(member).read().decode("utf-8")
                        elif ext == ".json" and "caption" not in sample:
                            meta = json.loads(tar.extractfile(member).read().decode("utf-8"))
                            if isinstance(meta, dict) and isinstance(meta.get("caption"), str):
                                sample["caption"] = meta["caption"]
            except (tarfile.TarError, OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ConfigError(f"data.path: shard {shard} is not a readable tar: {exc}") from exc
            for sample in samples.values():
                if "image" in sample and "caption" in sample:
                    offset, size, name = sample["image"]
                    self.items.append((shard, offset, size, name, sample["caption"].strip()))
        if not self.items:
            raise ConfigError(
                f"data.path: the shards ({shards[0]}, ...) hold no image with a caption "
                "(expected KEY.jpg/.png/.webp + KEY.txt or KEY.json with 'caption')"
            )

    def __len__(self) -> int:
        return len(self.items)

    def read(self, index: int) -> tuple[Any, str]:
        shard, offset, size, name, caption = self.items[index]
        with open(shard, "rb") as handle:
            handle.seek(offset)
            data = handle.read(size)
        return _open_image(data, Path(name)), caption


def open_source(config: Any, resolution: int, resolve: Any = Path) -> DataSource:
    """The source described by a ``[data]`` section (``train.config.DataSection``).

    ``resolve`` turns a config path into a :class:`Path` (relative to the config file).
    Missing paths and empty sources raise :class:`ConfigError` naming ``data.path``.
    """
    if config.source == "shapes":
        return ShapesSource(
            config.shapes, config.split, config.seed, config.image_size or resolution
        )
    path = resolve(config.path)
    if config.source == "folder":
        return FolderSource(path)
    if config.source == "jsonl":
        return JsonlSource(path)
    if config.source == "webdataset":
        return WebDatasetSource(_find_shards(path, config.path))
    raise ConfigError(f"data.source={config.source!r}: unknown source")  # Literal guards this


def _find_shards(path: Path, written: str) -> list[Path]:
    if path.is_dir():
        return sorted(path.glob("*.tar"))
    if path.is_file():
        return [path]
    matches = sorted(Path(p) for p in glob.glob(str(path)))
    if not matches:
        raise ConfigError(f"data.path={written!r}: no such file, directory or glob match")
    return matches


def _read_caption(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"caption file {path} is not readable UTF-8 text: {exc}") from exc


def _open_image(data: bytes, name: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidArgumentError("image", str(name), "a readable image file") from exc


# -- positions and pixels ----------------------------------------------------------------------
def item_index(sample_index: int, length: int, seed: int) -> int:
    """The item read at global sample position ``sample_index``.

    Finite sources are read in a fresh permutation each epoch, seeded by (seed, epoch), so
    the whole data order is a pure function of the seed. The shapes world is not shuffled
    (its items are already independent random scenes).
    """
    if length >= SHAPES_LENGTH:
        return sample_index % length
    epoch, offset = divmod(sample_index, length)
    return int(_permutation(length, seed, epoch)[offset])


_PERMUTATIONS: dict[tuple[int, int, int], np.ndarray] = {}


def _permutation(length: int, seed: int, epoch: int) -> np.ndarray:
    key = (length, seed, epoch)
    if key not in _PERMUTATIONS:
        if len(_PERMUTATIONS) > 4:
            _PERMUTATIONS.clear()
        _PERMUTATIONS[key] = np.random.default_rng([seed, epoch]).permutation(length)
    return _PERMUTATIONS[key]


def prepare_image(
    image: Any,
    resolution: int,
    *,
    image_size: int = 0,
    random_crop: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """PIL image or [3, H, W] tensor -> [3, R, R] float in [-1, 1], R = ``resolution``.

    The shorter side is resized to ``image_size`` (0: to R), then an R x R crop is taken:
    centred, or at a position drawn from ``generator`` when ``random_crop`` is set.
    """
    if not isinstance(image, torch.Tensor):
        from openimagen.images import from_pil

        image = from_pil(image)  # [3, H, W]
    target = image_size or resolution
    h, w = image.shape[-2:]
    if min(h, w) != target:
        scale = target / min(h, w)
        size = (max(target, round(h * scale)), max(target, round(w * scale)))
        image = F.interpolate(
            image[None], size=size, mode="bicubic", antialias=True, align_corners=False
        )[0].clamp(-1, 1)  # [3, H', W']
        h, w = size
    if random_crop:
        top = int(torch.randint(0, h - resolution + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - resolution + 1, (1,), generator=generator))
    else:
        top, left = (h - resolution) // 2, (w - resolution) // 2
    return image[:, top : top + resolution, left : left + resolution].contiguous()


def downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """[B, 3, R, R] -> [B, 3, size, size]: box filter for integer factors, else antialiased.

    The box filter is the area average, the same anti-aliasing the shapes renderer uses, so
    a downsampled shapes image equals one rendered at the low resolution.
    """
    r = images.shape[-1]
    if r % size == 0:
        return F.avg_pool2d(images, r // size)
    return F.interpolate(
        images, size=(size, size), mode="bicubic", antialias=True, align_corners=False
    ).clamp(-1, 1)


__all__ = [
    "DataSource",
    "FolderSource",
    "JsonlSource",
    "ShapesSource",
    "WebDatasetSource",
    "downsample",
    "item_index",
    "open_source",
    "prepare_image",
]
