"""Images at the edges: tensors in [-1, 1] <-> PIL, PNG files with provenance, grids.

Inside the library images are float tensors NCHW in [-1, 1]; this is the one module that
turns them into PNG bytes and files (used by the CLI and the server). Every PNG written here
carries provenance: the invisible watermark (:mod:`openimagen.watermark`) and tEXt chunks,
and, given ``credentials``, a signed C2PA manifest (:mod:`openimagen.provenance`) over both.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image, PngImagePlugin

from openimagen.errors import InvalidArgumentError
from openimagen.fileio import atomic_write, atomic_write_files
from openimagen.version import __version__
from openimagen.watermark import METHOD, embed_watermark, is_markable

if TYPE_CHECKING:
    from openimagen.provenance import ContentCredentials

# PNG tEXt key that marks a file as made by a generative model (read back by tests/tools).
AI_GENERATED_KEY = "ai_generated"


def to_pil(image: torch.Tensor) -> Image.Image:
    """[3, H, W] (or [1, 3, H, W]) float in [-1, 1] -> RGB PIL image (rounded, not floored)."""
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[0] != 3:
        raise InvalidArgumentError("image.shape", tuple(image.shape), "[3, H, W]")
    pixels = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(pixels.permute(1, 2, 0).numpy())


def from_pil(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> [3, H, W] float in [-1, 1]."""
    import numpy as np

    array = np.asarray(image.convert("RGB"), dtype=np.float32)  # [H, W, 3]
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0


def make_grid(images: torch.Tensor, columns: int | None = None, padding: int = 2) -> torch.Tensor:
    """[N, 3, H, W] -> one [3, H', W'] image, row-major, padded with white."""
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = torch.ones(c, rows * (h + padding) + padding, columns * (w + padding) + padding)
    for i in range(n):
        r, col = divmod(i, columns)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, top : top + h, left : left + w] = images[i].detach().float().cpu()
    return grid


def provenance(prompt: str, seed: int, model_id: str, sampling: Sequence[Any]) -> dict[str, Any]:
    """The text chunks that record how a generated image was made (CLI, server, DrawBench).

    ``sampling`` holds the stages' :class:`openimagen.cascade.SamplingConfig` (anything with
    ``to_dict()``); the chunks are written in this order by :func:`png_bytes`.
    """
    return {
        "prompt": prompt,
        "seed": seed,
        "model_id": model_id,
        "sampling": [s.to_dict() for s in sampling],
        "software": f"openimagen {__version__}",
    }


def png_bytes(
    image: torch.Tensor | Image.Image,
    metadata: Mapping[str, Any] | None = None,
    *,
    watermark: bool = True,
    credentials: ContentCredentials | None = None,
) -> bytes:
    """Encode one image as PNG with provenance: the invisible mark, tEXt chunks and, given
    ``credentials``, a signed C2PA manifest whose hash covers the pixels and the chunks.

    The chunks are ``ai_generated=true``, ``watermark`` (the method's name, only when the
    mark was embedded: images below :data:`openimagen.watermark.MIN_SIZE` are too small to
    carry it) and every ``metadata`` item, non-strings as JSON. Text outside Latin-1 is
    written as iTXt (UTF-8) by Pillow, so any prompt survives; text a PNG chunk cannot hold
    (NUL, lone surrogates, a malformed keyword) raises :class:`InvalidArgumentError`.
    """
    pil = image if isinstance(image, Image.Image) else to_pil(image)
    marked = watermark and is_markable(pil)
    chunks = {AI_GENERATED_KEY: "true", **({"watermark": METHOD} if marked else {})}
    for key, value in (metadata or {}).items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        chunks[_check_keyword(key)] = _check_chunk_text(key, text)
    if marked:
        pil = embed_watermark(pil)
    info = PngImagePlugin.PngInfo()
    for key, text in chunks.items():
        info.add_text(key, text)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", pnginfo=info)
    if credentials is not None:
        return credentials.sign_png(buffer.getvalue(), metadata)
    return buffer.getvalue()


def _check_keyword(key: object) -> str:
    # PNG spec, sec. 11.3.4.2: 1 to 79 printable Latin-1 characters, no leading/trailing space
    if (
        not isinstance(key, str)
        or not 1 <= len(key) <= 79
        or not key.isprintable()
        or key != key.strip()
        or max(map(ord, key)) > 255
    ):
        raise InvalidArgumentError(
            "metadata key", key, "a PNG text keyword: 1 to 79 printable Latin-1 characters"
        )
    return key


def _check_chunk_text(key: str, text: str) -> str:
    name = f"metadata[{key!r}]"
    if "\x00" in text:
        raise InvalidArgumentError(
            name, text, "text without NUL characters (the PNG format forbids them in text chunks)"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(
            name, text, f"valid Unicode text (character {exc.start} is a lone surrogate)"
        ) from None
    return text


def save_png(
    image: torch.Tensor | Image.Image,
    path: str | os.PathLike,
    metadata: Mapping[str, Any] | None = None,
    *,
    watermark: bool = True,
    credentials: ContentCredentials | None = None,
) -> Path:
    """Write :func:`png_bytes` to ``path`` atomically (a failed write keeps the old file)."""
    data = png_bytes(image, metadata, watermark=watermark, credentials=credentials)
    path = Path(path)
    with atomic_write(path, "wb") as handle:
        handle.write(data)
    return path


def read_png_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The tEXt chunks of a PNG as a dict of strings."""
    with Image.open(path) as image:
        return dict(getattr(image, "text", {}) or {})


def numbered_paths(out: str | os.PathLike, count: int) -> list[Path]:
    """``out.png`` for one image; ``out-0.png``, ``out-1.png`` ... for several."""
    out = Path(out)
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(count)]


def grid_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}-grid{out.suffix}")


def save_images(
    images: torch.Tensor,
    out: str | os.PathLike,
    metadata: Sequence[Mapping[str, Any]],
    *,
    grid: bool = True,
    watermark: bool = True,
    overwrite: bool = False,
    credentials: ContentCredentials | None = None,
) -> list[Path]:
    """Save [N, 3, H, W] images as numbered PNGs (plus a grid when N > 1), all marked (and
    signed, given ``credentials``: every file's bytes are signed before any is written).

    All or nothing (:func:`openimagen.fileio.atomic_write_files`): a failure leaves none of
    the files. An existing file raises :class:`FileExistsError` unless ``overwrite``.
    """
    paths = output_paths(out, images.shape[0], grid=grid)
    data = [
        png_bytes(img, meta, watermark=watermark, credentials=credentials)
        for img, meta in zip(images, metadata, strict=True)
    ]
    if len(paths) > len(data):
        shared = {k: v for k, v in metadata[0].items() if k not in ("seed",)}
        shared["seeds"] = [m.get("seed") for m in metadata]
        grid_png = png_bytes(make_grid(images), shared, watermark=watermark,
                             credentials=credentials)  # fmt: skip
        data.append(grid_png)
    return atomic_write_files(dict(zip(paths, data, strict=True)), overwrite=overwrite)


def check_output_paths(
    paths: Sequence[str | os.PathLike],
    *,
    overwrite: bool = False,
    name: str = "out",
    value: str | None = None,
    overwrite_hint: str = "pass overwrite=True to replace it",
) -> None:
    """Refuse, before any work, output files that :func:`save_images` could not write.

    Raises :class:`InvalidArgumentError` (naming ``name`` = ``value``) when a path is a
    directory, exists (unless ``overwrite``), or lies where no file can be created: the
    nearest existing ancestor must be a directory this process can create files in (the
    missing directories below it are made when the files are written).
    """
    import tempfile

    paths = [Path(p) for p in paths]
    shown = value if value is not None else str(paths[0])
    for path in paths:
        if path.is_dir():
            raise InvalidArgumentError(name, shown, "a file path", f"{path} is a directory.")
        if os.path.lexists(path) and not overwrite:
            raise InvalidArgumentError(
                name, shown, "a path where no file exists yet", f"{path} exists; {overwrite_hint}."
            )
    for parent in dict.fromkeys(p.absolute().parent for p in paths):
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise InvalidArgumentError(
                name, shown, "a path inside a directory", f"{parent} is not a directory."
            )
        try:
            with tempfile.TemporaryFile(dir=parent):
                pass
        except OSError as exc:
            raise InvalidArgumentError(
                name,
                shown,
                "a path in a writable directory",
                f"cannot create files in {parent} ({exc.strerror or exc}).",
            ) from None


def output_paths(out: str | os.PathLike, count: int, *, grid: bool = True) -> list[Path]:
    """Every file :func:`save_images` writes for ``count`` images: numbered, then the grid."""
    paths = numbered_paths(out, count)
    return paths + [grid_path(out)] if grid and count > 1 else paths
