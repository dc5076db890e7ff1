"""One training step's inputs and loss: data positions, per-sample randomness, text, loss.

Every random draw of global sample ``i`` comes from generators seeded by ``(train.seed, i)``
(stream 0: diffusion time, caption dropout, aug level and noise; stream 1: the crop), so a
sample's loss does not depend on batch size, process count or accumulation, and a resumed
run repeats the uninterrupted one exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from openimagen.cascade import AnyStageConfig, SamplingConfig, Stage, StageConfig
from openimagen.data.sources import downsample, item_index, prepare_image
from openimagen.diffusion import (
    diffusion_loss,
    prepare_lowres,
    q_sample,
    randn_per_sample,
)
from openimagen.errors import OpenImagenError
from openimagen.train.config import TrainConfig
from openimagen.train.logging import MetricsLogger


def per_sample_generator(seed: int, index: int, stream: int) -> torch.Generator:
    # SeedSequence mixes (seed, index, stream) into well-separated 64-bit seeds.
    value = np.random.SeedSequence([seed, index, stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(value[0]) << 32 | int(value[1]))


class TextEmbedder:
    """Captions -> (embeddings [B, L, D], mask [B, L]) through the caches.

    The in-memory cache encodes each new caption on its own, so a caption's embedding never
    depends on which other captions shared its batch (exact resume needs that); a batch's
    new captions go to the disk cache as one shard.
    """

    def __init__(self, config: TrainConfig, device: torch.device):
        from openimagen.text import TextEmbeddingCache, load_text_encoder

        t = config.text
        self.encoder = load_text_encoder(
            t.encoder, max_length=t.max_length, device=device, conditioning=t.conditioning
        )
        self.disk = TextEmbeddingCache(config.resolve_path(t.cache_dir)) if t.cache_dir else None
        self.memory: dict[str, torch.Tensor] | None = {} if t.memory_cache else None
        self.device = device

    def __call__(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        from openimagen.text import encode_with_cache
        from openimagen.text.cache import pad

        if self.memory is None:
            emb, mask = encode_with_cache(self.encoder, captions, self.disk)
            return emb.to(self.device), mask.to(self.device)
        new = [c for c in dict.fromkeys(captions) if c not in self.memory]
        fresh: dict[str, torch.Tensor] = {}
        if new:  # each encoded on its own, all stored in the disk cache as one shard
            emb, mask = encode_with_cache(self.encoder, new, self.disk, one_by_one=True)
            fresh = {c: emb[i][mask[i]].float().cpu() for i, c in enumerate(new)}  # [L_i, D]
        rows = [fresh[c] if c in fresh else self.memory[c] for c in captions]
        self.memory.update(fresh)
        while len(self.memory) > 200_000:  # evict the oldest; this batch's rows are taken
            self.memory.pop(next(iter(self.memory)))
        return pad(rows, dim=self.encoder.dim, device=self.device)


def load_images(
    config: TrainConfig, stage: StageConfig, source: Any, indices: range
) -> tuple[torch.Tensor, list[str]]:
    """Images [b, 3, R, R] and captions at global sample positions ``indices``."""
    images, captions = [], []
    for i in indices:
        image, caption = source.read(item_index(i, len(source), config.data.seed))
        images.append(
            prepare_image(
                image,
                stage.resolution,
                image_size=config.data.image_size,
                random_crop=config.data.random_crop,
                generator=per_sample_generator(config.train.seed, i, 1),
            )
        )
        captions.append(caption)
    return torch.stack(images), captions  # [b, 3, R, R]


class MicroBatches(torch.utils.data.Dataset):
    """This process's micro-batches from global position ``start`` on, in training order.

    Item k is (images, captions, first position): step k // grad_accum after ``start``,
    accumulation round k % grad_accum, this process's slice of that round. Served through a
    DataLoader, so ``data.num_workers`` processes decode and render ahead of the GPU.
    """

    def __init__(self, config: TrainConfig, stage: StageConfig, source: Any, *, start: int,
                 steps: int, micro: int, rank: int, world: int):  # fmt: skip
        self.config, self.stage, self.source = config, stage, source
        self.start, self.micro, self.rank, self.world = start, micro, rank, world
        self.count = steps * config.train.grad_accum

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, k: int) -> tuple[torch.Tensor, list[str], int] | DataFailure:
        step, r = divmod(k, self.config.train.grad_accum)
        per_round = self.micro * self.world
        first = self.start + step * self.config.train.batch_size + r * per_round
        first += self.rank * self.micro
        try:
            images, captions = load_images(
                self.config, self.stage, self.source, range(first, first + self.micro)
            )
        except OpenImagenError as exc:
            if torch.utils.data.get_worker_info() is None:  # the main process: raise it here
                raise
            # in a worker, torch would re-raise it as a RuntimeError holding a traceback
            return DataFailure(str(exc))
        return images, captions, first


@dataclasses.dataclass(frozen=True)
class DataFailure:
    """What a DataLoader worker returns instead of a batch when the data is bad (a user
    error): the trainer raises it in the main process as one line."""

    message: str


def sample_generators(seed: int, first: int, count: int) -> list[torch.Generator]:
    """The per-sample generators (stream 0) of positions first .. first + count - 1."""
    return [per_sample_generator(seed, i, 0) for i in range(first, first + count)]


# -- the loss of one micro-batch -------------------------------------------------------------------
def micro_batch_loss(
    model: Callable[..., torch.Tensor],  # the U-Net, or its forward under autocast
    stage: AnyStageConfig,
    config: TrainConfig,
    images: torch.Tensor,
    text_embeds: torch.Tensor,
    text_mask: torch.Tensor,
    generators: list[torch.Generator],
    null_text: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Per-sample diffusion losses [b] for clean ``images`` [b, 3, R, R] in [-1, 1].

    Draw order per sample generator: time t, caption-dropout coin, aug level, noise, aug noise.
    A dropped caption has every token masked or, given ``null_text`` (the empty prompt's
    embeddings [1, L, D] and mask [1, L]: DeepFloyd IF's unconditional input), becomes it.
    The time grid, what the network is fed and the low-res input follow the stage's config
    (continuous t, or a discrete-time stage's timesteps). A learned-variance head is not
    trained: the loss reads the prediction channels only, as IF's fine-tuning recipes do.
    """
    device, b = images.device, images.shape[0]
    schedule = stage.noise_schedule()
    u = torch.stack([torch.rand(3, generator=g) for g in generators]).to(device)  # [b, 3]
    # [b]: uniform diffusion time (continuous-time training, VDM sec. 3), or a timestep
    t = stage.training_time(u[:, 0])
    # classifier-free guidance (Ho & Salimans 2022): drop the caption of ~text_dropout
    keep = (u[:, 1] >= config.train.text_dropout).view(b, 1)  # [b, 1]
    if null_text is None:
        text_mask = text_mask & keep  # [b, L]
    else:
        null_embeds, null_mask = (v.to(device) for v in null_text)
        text_embeds = torch.where(keep[..., None], text_embeds, null_embeds)  # [b, L, D]
        text_mask = torch.where(keep, text_mask, null_mask)  # [b, L]
    noise = randn_per_sample(images.shape, generators, device=device, dtype=images.dtype)
    logsnr = schedule(t).to(images.dtype)  # [b]
    x_t = q_sample(images, logsnr, noise)  # [b, 3, R, R]
    lowres = aug = None
    if stage.unet.super_resolution:
        # noise conditioning augmentation (Imagen sec. 2.5): aug level ~ U[0, max_aug_level]
        aug = stage.training_time(u[:, 2] * config.train.max_aug_level, aug=True)  # [b]
        small = downsample(images, stage.lowres_resolution)  # [b, 3, r, r]
        lowres = prepare_lowres(small, stage.resolution, aug, stage.lowres_schedule(),
                                generators, resize=stage.lowres_resize)  # fmt: skip
        aug = stage.network_noise_level(aug)
    pred = model(x_t, stage.network_time(t), text_embeds, text_mask, lowres=lowres, aug_level=aug)
    pred = pred[:, : images.shape[1]]  # [b, 3, R, R]: without a learned-variance head
    return diffusion_loss(
        pred.float(),
        images.float(),
        noise.float(),
        logsnr,
        stage.unet.prediction,
        min_snr_gamma=config.train.min_snr_gamma,
        reduction="none",
    )  # [b]


class SampleGrid:
    """Periodic sample grids from the EMA weights, fixed prompts and seeds."""

    def __init__(
        self,
        config: TrainConfig,
        stage: AnyStageConfig,
        source: Any,
        embed: Any,
        out: Path,
        *,
        save: bool = True,
    ):
        # save=False: sample (a sharded EMA needs every process's forward) but write nothing
        self.config, self.stage, self.out, self.save = config, stage, out, save
        prompts = list(config.log.sample_prompts)
        self.lowres = None
        if stage.unet.super_resolution:  # SR grids upsample real low-res images
            items = [
                source.read(item_index(i, len(source), config.data.seed))
                for i in range(len(prompts))
            ]
            prompts = [c for _, c in items]
            hi = torch.stack(
                [
                    prepare_image(im, stage.resolution, image_size=config.data.image_size)
                    for im, _ in items
                ]
            )
            self.lowres = downsample(hi, stage.lowres_resolution)  # [N, 3, r, r]
        self.prompts = prompts
        self.embeds = embed(prompts)
        self.uncond = None  # DeepFloyd IF: the unconditional branch is the empty prompt
        if config.text.conditioning == "deepfloyd-if":
            null, null_mask = embed([""])  # [1, L, D], [1, L]
            n = len(prompts)
            self.uncond = (null.expand(n, -1, -1), null_mask.expand(n, -1))

    def __call__(self, step: int, unet: torch.nn.Module, metrics: MetricsLogger) -> Path | None:
        from openimagen.images import make_grid, save_png

        log = self.config.log
        sampling = SamplingConfig(
            sampler="ddim",
            steps=log.sample_steps,
            guidance_weight=log.sample_guidance,
            noise_aug_level=log.sample_aug_level,
        )
        gens = [torch.Generator().manual_seed(s) for s in log.sample_seeds]
        stage = Stage(self.stage, unet)
        emb, mask = self.embeds
        lowres = self.lowres.to(emb.device) if self.lowres is not None else None
        images = stage.sample(emb, mask, gens, sampling, lowres=lowres,
                              uncond_text=self.uncond)  # [N, 3, R, R]  # fmt: skip
        if not self.save:
            return None
        grid = make_grid(images)
        path = save_png(
            grid, self.out / "samples" / f"step_{step:08d}.png", {"prompts": self.prompts}
        )
        metrics.log_image(step, "samples", grid)
        return path


__all__ = [
    "DataFailure",
    "MicroBatches",
    "SampleGrid",
    "TextEmbedder",
    "load_images",
    "micro_batch_loss",
    "per_sample_generator",
    "sample_generators",
]
