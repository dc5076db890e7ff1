"""The shapes world as a torch Dataset: item i depends only on (seed, split, i)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from openimagen.data.shapes.layout import Layout, sample_layout
from openimagen.data.shapes.render import render_layout, to_tensor
from openimagen.data.shapes.spec import SPLITS, ShapeSpec, check_split
from openimagen.data.shapes.world import ShapesConfig, caption, sample_spec
from openimagen.errors import InvalidArgumentError

_MAX_REDRAWS = 50


class ShapesWorld(Dataset):
    """Captioned scenes of ``split``; item ``i`` depends only on (seed, split, i).

    Each item is ``{"image": [3, H, W] float in [-1, 1], "caption": str, "spec": ShapeSpec,
    "index": int}``; training resumes at any index with :meth:`iterate`.
    """

    def __init__(
        self,
        config: ShapesConfig | None = None,
        resolution: int = 32,
        split: str = "train",
        seed: int | None = None,
        length: int = 1_000_000,
    ):
        self.config = config or ShapesConfig()
        self.resolution = resolution
        self.split = check_split(split)
        self.seed = self.config.seed if seed is None else seed
        if length < 1:
            raise InvalidArgumentError("length", length, "a positive integer")
        self.length = length

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int) -> tuple[ShapeSpec, Layout]:
        """The spec (with its caption as prompt) and layout of item ``index``, without pixels."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for ShapesWorld of length {self.length}")
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), index])
        # A drawn scene that does not fit the image (rare: many large objects in relations)
        # is drawn again from the same generator, so item i stays a function of i.
        for _ in range(_MAX_REDRAWS):
            spec = sample_spec(rng, self.config, self.split)
            try:
                layout = sample_layout(spec, rng, self.config, max_attempts=40)
            except InvalidArgumentError:
                continue
            return spec.with_prompt(caption(spec, rng, self.split, self.config)), layout
        raise InvalidArgumentError(
            "data.shapes", "this config", "a world whose scenes fit the image",
            "Use smaller radii or fewer objects (max_objects).",
        )  # fmt: skip

    def __getitem__(self, index: int) -> dict[str, Any]:
        spec, layout = self.sample(index)
        image = to_tensor(render_layout(layout, self.resolution))  # [3, H, W]
        return {"image": image, "caption": spec.prompt, "spec": spec, "index": index}

    def iterate(self, start: int = 0) -> Iterator[dict[str, Any]]:
        for index in range(start, self.length):
            yield self[index]


def collate_shapes(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """DataLoader ``collate_fn``: stacks images [B, 3, H, W], keeps captions and specs as lists."""
    return {
        "image": torch.stack([b["image"] for b in batch]),
        "caption": [b["caption"] for b in batch],
        "spec": [b["spec"] for b in batch],
        "index": torch.tensor([b["index"] for b in batch]),
    }
