"""The cascade: a frozen text encoder and a list of stages (base first), sampled in order.

Imagen (Saharia et al., 2022, sec. 2.5) samples a small text-conditional base model and then
text-conditional super-resolution (SR) stages, each trained on its own. Every SR stage sees
the previous stage's output upsampled to its own size and corrupted by noise conditioning
augmentation, and is told the augmentation level. :meth:`Cascade.load` / :meth:`Cascade.save`
read and write a model directory (:mod:`openimagen.cascade.modeldir`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from openimagen.cascade.modeldir import (
    load_stage_weights,
    read_cascade_config,
    read_stage_config,
    resolve_text_encoder_name,
    write_model_directory,
)
from openimagen.cascade.sampling import SamplingConfig, one_of
from openimagen.cascade.schema import check_stages
from openimagen.cascade.stage import ProgressFn, Stage
from openimagen.device import resolve_device
from openimagen.errors import InvalidArgumentError
from openimagen.text import TEXT_CONDITIONINGS, TextEncoder, check_prompt, load_text_encoder


class Cascade:
    """A frozen text encoder and a list of stages (base first), sampled in order."""

    def __init__(
        self,
        text_encoder: TextEncoder,
        stages: Sequence[Stage],
        sampling: Sequence[SamplingConfig] | None = None,
        *,
        model_id: str = "",
        text_conditioning: str = "masked",
    ):
        self.text_encoder = text_encoder
        self.stages = list(stages)
        self.sampling = list(sampling) if sampling is not None else [SamplingConfig()] * len(stages)
        self.model_id = model_id
        if text_conditioning not in TEXT_CONDITIONINGS:
            raise InvalidArgumentError(
                "text_conditioning", text_conditioning, one_of(TEXT_CONDITIONINGS)
            )
        # "deepfloyd-if": the unconditional branch is the empty prompt's encoding
        self.text_conditioning = text_conditioning
        self.offload_device: torch.device | None = None  # set by offload()
        check_stages([s.config for s in self.stages], text_dim=text_encoder.dim)
        if len(self.sampling) != len(self.stages):
            raise InvalidArgumentError(
                "sampling", f"{len(self.sampling)} entries", f"one per stage ({len(self.stages)})"
            )

    @property
    def device(self) -> torch.device:
        """Where the stages sample (with :meth:`offload`, where each is moved to sample)."""
        if self.offload_device is not None:
            return self.offload_device
        return next(self.stages[0].unet.parameters()).device

    @property
    def resolution(self) -> int:
        return self.stages[-1].config.resolution

    def to(self, device: str | torch.device | None) -> Cascade:
        device = resolve_device(device)
        self.offload_device = None
        for stage in self.stages:
            stage.unet.to(device)
        return self

    def offload(self, device: str | torch.device | None) -> Cascade:
        """Keep the U-Nets in CPU memory and move each to ``device`` only while it samples.

        One U-Net at a time is in ``device`` memory (DeepFloyd IF's stage I XL alone is 4.3B
        parameters); the text encoder stays where it is. Images do not change.
        """
        self.to("cpu")
        self.offload_device = resolve_device(device)
        return self

    @contextlib.contextmanager
    def _placed(self, stage: Stage) -> Iterator[None]:
        """``stage`` on the sampling device for the block (and back to the CPU when offloading)."""
        if self.offload_device is None:
            yield
            return
        stage.unet.to(self.offload_device)
        try:
            yield
        finally:
            stage.unet.to("cpu")
            if self.offload_device.type == "cuda":
                torch.cuda.empty_cache()

    # -- sampling ------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        *,
        sampling: Sequence[SamplingConfig] | None = None,
        num_stages: int | None = None,
        progress: ProgressFn | None = None,
    ) -> torch.Tensor:
        """Images for ``prompts[i]`` drawn with ``seeds[i]``: [N, 3, R, R] in [-1, 1].

        Image i depends only on its prompt and seed, whatever else is in the batch.
        ``sampling`` overrides the per-stage defaults; ``num_stages`` stops early.
        """
        prompts = list(prompts)
        seeds = [int(s) for s in seeds]
        if not prompts:
            raise InvalidArgumentError("prompts", prompts, "at least one prompt")
        if len(seeds) != len(prompts):
            raise InvalidArgumentError(
                "seeds", f"{len(seeds)} seeds", f"one per prompt ({len(prompts)})"
            )
        for i, prompt in enumerate(prompts):
            check_prompt(prompt, f"prompts[{i}]")
        sampling = list(sampling) if sampling is not None else self.sampling
        if len(sampling) != len(self.stages):
            raise InvalidArgumentError(
                "sampling", f"{len(sampling)} entries", f"{len(self.stages)}"
            )
        count = len(self.stages)
        if num_stages is not None and (
            isinstance(num_stages, bool) or not isinstance(num_stages, int)
            or not 1 <= num_stages <= count
        ):  # fmt: skip
            raise InvalidArgumentError(
                "num_stages", num_stages, f"None (all) or an integer from 1 to {count}",
                f"This model has {count} stage{'s' if count > 1 else ''}.",
            )  # fmt: skip
        stages = self.stages[: num_stages or count]

        text_embeds, text_mask = self.encode(prompts)
        uncond_text = None
        if self.text_conditioning == "deepfloyd-if":
            null_embeds, null_mask = self.encode([""])  # [1, L, D], [1, L]
            n = len(prompts)
            uncond_text = (null_embeds.expand(n, -1, -1), null_mask.expand(n, -1))
        # One generator per image, kept across stages: image i depends only on seed i.
        generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        total = sum(s.steps for s in sampling[: len(stages)])
        done = 0
        image = None
        for index, (stage, settings) in enumerate(zip(stages, sampling, strict=False)):

            def stage_progress(step: int, steps: int, _offset: int = done) -> None:
                if progress is not None:
                    progress(_offset + step + 1, total)

            with self._placed(stage):
                image = stage.sample(
                    text_embeds, text_mask, generators, settings, lowres=image,
                    progress=stage_progress, name=f"stage {index}", uncond_text=uncond_text,
                )  # fmt: skip
            done += settings.steps
        return image

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Text embeddings [N, L, D] and mask [N, L]; each distinct prompt encoded once."""
        unique = list(dict.fromkeys(prompts))
        embeds, mask = self.text_encoder.encode(unique)  # [U, L, D], [U, L]
        index = torch.tensor([unique.index(p) for p in prompts])
        device = self.device
        # the samplers run in float32 (float64 for a float64 encoder: reference checks)
        dtype = torch.float64 if embeds.dtype == torch.float64 else torch.float32
        return embeds[index].to(device=device, dtype=dtype), mask[index].to(device)

    # -- files ---------------------------------------------------------------------------
    def save(
        self,
        directory: str | os.PathLike,
        *,
        dtype: torch.dtype = torch.float32,
        overwrite: bool = False,
    ) -> Path:
        """Write a model directory (:func:`openimagen.cascade.modeldir.write_model_directory`)."""
        return write_model_directory(
            directory,
            self.stages,
            self.sampling,
            text_encoder=self.text_encoder.name,
            text_max_length=self.text_encoder.max_length,
            model_id=self.model_id,
            dtype=dtype,
            overwrite=overwrite,
            text_conditioning=self.text_conditioning,
        )

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        text_encoder: TextEncoder | None = None,
        dtype: torch.dtype | None = None,
        text_device: str | torch.device | None = None,
        offload: bool = False,
    ) -> Cascade:
        """Read and validate a model directory (see module docstring).

        ``dtype`` (default float32) is what the U-Nets and the text encoder hold their weights
        and compute in (bfloat16 / float16 halve their memory); ``text_device`` (default:
        ``device``, or the CPU with ``offload``) places the text encoder apart, e.g. a T5-XXL
        on the CPU beside U-Nets on a GPU: its embeddings move to the stages' device.
        ``offload`` keeps the U-Nets on the CPU and moves each to ``device`` in turn
        (:meth:`offload`).
        """
        if text_device is None:
            text_device = "cpu" if offload else device
        directory = Path(directory)
        config = read_cascade_config(directory)
        stage_configs = [read_stage_config(directory / e.path) for e in config.stages]
        if text_encoder is None:
            text_encoder = load_text_encoder(
                resolve_text_encoder_name(config.text_encoder, directory),
                max_length=config.text_max_length,
                device=resolve_device(text_device),
                dtype=dtype,
                conditioning=config.text_conditioning,
            )
        check_stages(stage_configs, text_dim=text_encoder.dim, where=str(directory))
        stages = [
            load_stage_weights(sc, directory / e.path, dtype=dtype)
            for sc, e in zip(stage_configs, config.stages, strict=True)
        ]
        cascade = cls(
            text_encoder,
            stages,
            [e.sampling for e in config.stages],
            model_id=config.model_id or directory.name,
            text_conditioning=config.text_conditioning,
        )
        return cascade.offload(device) if offload else cascade.to(device)


__all__ = ["Cascade"]
