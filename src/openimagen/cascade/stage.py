"""One stage of a cascade: a diffusion U-Net with its config, and how it samples itself.

The denoiser a stage samples with is built here, once, from the parts the diffusion code
provides (Imagen sec. 2.2, 2.3): ``threshold(guidance(model_to_denoiser(U-Net)))``. A
super-resolution stage's low-res input first goes through noise conditioning augmentation
(:func:`openimagen.diffusion.prepare_lowres`, sec. 2.5).

The network is openimagen's :class:`~openimagen.models.EfficientUNet` or, for a
:class:`~openimagen.cascade.schema.DiffusersStageConfig`, diffusers' U-Net
(:class:`~openimagen.models.DiffusersUNet`, DeepFloyd IF). What differs between them (the
schedule, the time grid, what the network is fed, the variance head, the thresholding bound,
how the low-res input is made) is read from the stage's config, so the sampling code is one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from openimagen.cascade.sampling import SamplingConfig
from openimagen.cascade.schema import AnyStageConfig, DiffusersStageConfig
from openimagen.diffusion import (
    apply_threshold,
    classifier_free_guidance,
    get_sampler,
    model_to_denoiser,
    prepare_lowres,
    randn_per_sample,
)
from openimagen.errors import InvalidArgumentError, NonFiniteOutputError
from openimagen.models.diffusers_unet import DiffusersUNet
from openimagen.models.unet import EfficientUNet

ProgressFn = Callable[[int, int], None]


class Stage:
    """One diffusion U-Net of the cascade with its config; knows how to sample itself."""

    def __init__(self, config: AnyStageConfig, unet: torch.nn.Module | None = None):
        self.config = config
        if unet is None:
            diffusers = isinstance(config, DiffusersStageConfig)
            unet = DiffusersUNet(config.unet) if diffusers else EfficientUNet(config.unet)
        self.unet = unet
        self.unet.eval()
        self.schedule = config.noise_schedule()

    @property
    def is_super_resolution(self) -> bool:
        return self.config.unet.super_resolution

    def model_fn(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        """Raw network output for ``(x_t, t, cond)``; ``cond`` is the dict built by ``sample``.

        The network is fed the time and noise level as its config says (continuous t, or a
        discrete-time network's timestep index)."""
        aug = cond.get("aug_level")
        return self.unet(
            x_t,
            self.config.network_time(t),
            cond["text_embeds"],
            cond["text_mask"],
            lowres=cond.get("lowres"),
            aug_level=None if aug is None else self.config.network_noise_level(aug),
        )

    @torch.no_grad()
    def sample(
        self,
        text_embeds: torch.Tensor,
        text_mask: torch.Tensor,
        generators: Sequence[torch.Generator],
        sampling: SamplingConfig,
        *,
        lowres: torch.Tensor | None = None,
        progress: ProgressFn | None = None,
        name: str | None = None,
        uncond_text: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Draw one image per row of ``text_embeds``; returns [B, 3, R, R] in [-1, 1].

        The unconditional branch of guidance is the same text with every token masked, or,
        given ``uncond_text`` (embeddings [B, L, D], mask [B, L]), that text (DeepFloyd IF:
        the empty prompt's encoding).

        Raises :class:`NonFiniteOutputError` (naming the stage as ``name``) when a sample
        holds NaN or infinite values, which clamping to [-1, 1] would otherwise turn into a
        plausible-looking black or white image.
        """
        device = text_embeds.device
        size = self.config.resolution
        config = self.config
        x_T, cond = self._inputs(text_embeds, text_mask, generators, sampling, lowres)
        if uncond_text is None:
            # The unconditional branch: same inputs, every text token masked out.
            uncond = dict(cond, text_mask=torch.zeros_like(text_mask))
        else:
            uncond = dict(cond, text_embeds=uncond_text[0], text_mask=uncond_text[1])
        denoiser = self._denoiser(sampling, uncond, device)
        timesteps = config.sampling_timesteps(sampling.sampler, sampling.steps).to(device)
        extra: dict[str, Any] = {}
        if sampling.sampler == "ddim":
            extra["eta"] = sampling.eta
        if sampling.sampler == "ddpm" and config.learned_variance:
            extra["learned_variance"] = True

        def callback(step: int, total: int, x_t: torch.Tensor, x0_hat: torch.Tensor) -> None:
            if progress is not None:
                progress(step, total)

        x0 = get_sampler(sampling.sampler)(
            denoiser,
            x_T,
            timesteps,
            schedule=self.schedule,
            generator=list(generators),
            callback=callback,
            cond=cond,
            **extra,
        )
        bad = ~torch.isfinite(x0).flatten(1).all(dim=1)  # [B]
        if bool(bad.any()):
            seeds = [g.initial_seed() for g, b in zip(generators, bad.tolist(), strict=True) if b]
            kind = "super-resolution" if self.is_super_resolution else "base"
            raise NonFiniteOutputError(
                f"{name or 'the stage'} ({kind}, {size}x{size}) produced values that are not "
                f"finite (NaN or inf) for seeds {seeds}: its weights may be damaged (check them "
                "with torch.isfinite) or the sampling settings unstable (try precision 'fp32' "
                "or a lower guidance weight)"
            )
        return x0.clamp(-1.0, 1.0)

    def _inputs(
        self,
        text_embeds: torch.Tensor,
        text_mask: torch.Tensor,
        generators: Sequence[torch.Generator],
        sampling: SamplingConfig,
        lowres: torch.Tensor | None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """x_T and the conditioning of :meth:`sample`, random draws in the stage's order."""
        config = self.config
        batch, device, size = text_embeds.shape[0], text_embeds.device, config.resolution
        shape = (batch, config.unet.out_channels, size, size)
        cond: dict[str, Any] = {"text_embeds": text_embeds, "text_mask": text_mask}
        x_T = None
        if config.initial_noise_first:  # DeepFloyd IF's order of draws
            x_T = randn_per_sample(shape, generators, device=device, dtype=text_embeds.dtype)
        if self.is_super_resolution:
            if lowres is None:
                raise InvalidArgumentError(
                    "lowres", None, "the previous stage's images for an SR stage"
                )
            aug = config.noise_levels(sampling.noise_aug_level, batch, device)  # [B]
            cond["lowres"] = prepare_lowres(
                lowres, size, aug, config.lowres_schedule(), generators,
                resize=config.lowres_resize,
            )  # fmt: skip
            cond["aug_level"] = aug
        if x_T is None:
            x_T = randn_per_sample(shape, generators, device=device, dtype=text_embeds.dtype)
        return x_T, cond

    def _denoiser(
        self, sampling: SamplingConfig, uncond: dict[str, Any], device: torch.device
    ) -> Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]:
        """threshold(guidance(model_to_denoiser(U-Net))), in the order the stage guides."""
        config = self.config
        model_fn = self.model_fn
        if sampling.precision == "bf16":
            model_fn = _autocast_bf16(self.model_fn, device)
        w = sampling.guidance_weight
        if config.guide_prediction:  # guide the raw eps, then convert (DeepFloyd IF's order)
            model_fn = classifier_free_guidance(model_fn, w, uncond)
        denoiser = model_to_denoiser(
            model_fn, self.schedule, config.unet.prediction,
            learned_variance=config.learned_variance,
        )  # fmt: skip
        if not config.guide_prediction:
            denoiser = classifier_free_guidance(denoiser, w, uncond)
        return apply_threshold(
            denoiser, sampling.threshold, sampling.dynamic_threshold_percentile,
            config.dynamic_threshold_max,
        )  # fmt: skip


def _autocast_bf16(
    model_fn: Callable[[torch.Tensor, torch.Tensor, dict[str, Any]], torch.Tensor],
    device: torch.device,
) -> Callable[[torch.Tensor, torch.Tensor, dict[str, Any]], torch.Tensor]:
    """``model_fn`` run under bfloat16 autocast, its output back in float32."""

    def run(x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = model_fn(x_t, t, cond)
        return out.float()

    return run


__all__ = ["ProgressFn", "Stage"]
