"""The COCO captions file and the paper's draw of captions from it (Saharia et al., 2022, 4.1).

``captions_val2014.json`` (COCO 2014, ``annotations_trainval2014.zip``) lists the validation
images (``images``: id, file name) and their five-odd human captions each (``annotations``:
id, image id, caption). :func:`read_coco_captions` checks it entry by entry (an error names
the entry) and orders it by image id; :func:`draw_captions` is the seeded draw of
``openimagen eval coco``: ``num`` images at random, one of each image's captions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from openimagen.errors import InvalidArgumentError
from openimagen.eval.metrics import check_file
from openimagen.text import check_prompt

#: the category of every drawn caption in the prompt file the DrawBench runner reads
CATEGORY = "coco"
_COCO_FIX = (
    "Pass captions_val2014.json from COCO's annotations_trainval2014.zip "
    "(instances_*.json and person_keypoints_*.json hold no captions)."
)


@dataclasses.dataclass(frozen=True)
class CocoImage:
    """One image of a captions file: its id, file name and (annotation id, caption) pairs."""

    image_id: int
    file_name: str
    captions: tuple[tuple[int, str], ...]


@dataclasses.dataclass(frozen=True)
class CocoCaptions:
    """A COCO captions file: its images in image-id order."""

    path: Path
    sha256: str
    images: tuple[CocoImage, ...]

    @property
    def captioned(self) -> list[CocoImage]:
        return [image for image in self.images if image.captions]


@dataclasses.dataclass(frozen=True)
class DrawnCaption:
    """One drawn caption: ``index`` is its prompt index in the run (its seed derives from it)."""

    index: int
    image_id: int
    annotation_id: int
    file_name: str
    caption: str

    def row(self) -> dict[str, Any]:
        return {"prompt": self.caption, "category": CATEGORY, "image_id": self.image_id,
                "annotation_id": self.annotation_id, "file_name": self.file_name}  # fmt: skip


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_coco_captions(path: str | os.PathLike) -> CocoCaptions:
    """Parse a COCO captions file (``{"images": [...], "annotations": [...]}``); errors name the entry."""
    path = check_file("--captions", path, "COCO's captions_val2014.json", _COCO_FIX)
    data_bytes = path.read_bytes()
    try:
        data = json.loads(data_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgumentError(
            "--captions", str(path), "a COCO captions file (JSON)", f"It is not JSON ({exc}). {_COCO_FIX}"
        ) from exc  # fmt: skip
    if not (isinstance(data, dict) and isinstance(data.get("images"), list)
            and isinstance(data.get("annotations"), list)):  # fmt: skip
        raise InvalidArgumentError(
            "--captions", str(path), 'a COCO captions file: a JSON object with "images" and '
            '"annotations" lists', _COCO_FIX,
        )  # fmt: skip
    names: dict[int, str] = {}
    for i, image in enumerate(data["images"]):
        if not (isinstance(image, dict) and _is_int(image.get("id"))
                and isinstance(image.get("file_name"), str) and image["file_name"]):  # fmt: skip
            raise InvalidArgumentError(
                f"--captions {path.name} images[{i}]", image,
                'an object with an integer "id" and a "file_name"', _COCO_FIX,
            )  # fmt: skip
        names[image["id"]] = image["file_name"]
    captions: dict[int, list[tuple[int, str]]] = {image_id: [] for image_id in names}
    for i, note in enumerate(data["annotations"]):
        if not (isinstance(note, dict) and _is_int(note.get("image_id")) and _is_int(note.get("id"))
                and isinstance(note.get("caption"), str)):  # fmt: skip
            raise InvalidArgumentError(
                f"--captions {path.name} annotations[{i}]", note,
                'an object with integer "id" and "image_id" and a "caption" string', _COCO_FIX,
            )  # fmt: skip
        if note["image_id"] not in names:
            raise InvalidArgumentError(
                f"--captions {path.name} annotations[{i}].image_id", note["image_id"],
                'the id of an entry of "images"', "The file is damaged; download it again.",
            )  # fmt: skip
        text = " ".join(note["caption"].split())  # COCO captions carry stray newlines, spaces
        where = f"--captions {path.name} annotations[{i}].caption"
        if not text:
            raise InvalidArgumentError(where, note["caption"], "a non-empty caption")
        captions[note["image_id"]].append((note["id"], check_prompt(text, where)))
    images = tuple(
        CocoImage(image_id, names[image_id], tuple(sorted(captions[image_id])))
        for image_id in sorted(names)
    )
    return CocoCaptions(path, hashlib.sha256(data_bytes).hexdigest(), images)


def draw_captions(captions: CocoCaptions, num: int, seed: int) -> list[DrawnCaption]:
    """``num`` images drawn at random under ``seed``, one caption each (module docstring)."""
    import torch

    pool = captions.captioned
    if not (_is_int(num) and 1 <= num <= len(pool)):
        raise InvalidArgumentError(
            "--num", num, f"an integer from 1 to {len(pool)}, the captioned images of "
            f"{captions.path.name}", "The paper draws 30000 from captions_val2014.json (40504 images).",
        )  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(pool), generator=generator).tolist()  # [n_images]
    choice = torch.rand(len(pool), generator=generator, dtype=torch.float64).tolist()  # [n_images]
    drawn = []
    for index in range(num):
        image = pool[order[index]]
        k = min(int(choice[index] * len(image.captions)), len(image.captions) - 1)
        annotation_id, text = image.captions[k]
        drawn.append(DrawnCaption(index, image.image_id, annotation_id, image.file_name, text))
    return drawn


__all__ = [
    "CATEGORY",
    "CocoCaptions",
    "CocoImage",
    "DrawnCaption",
    "draw_captions",
    "read_coco_captions",
]
