"""diffusers' ``UNet2DConditionModel`` as a stage network: the U-Net of DeepFloyd IF's weights.

DeepFloyd IF (a pixel cascade with Imagen's architecture: frozen T5-XXL, cross-attention on the
token sequence, attention pooling of the text into the time embedding) publishes its stages
as diffusers ``UNet2DConditionModel`` checkpoints. They are used here as they are, not
rewritten: :class:`DiffusersUNet` holds diffusers' own module and gives it the forward
signature of :class:`~openimagen.models.EfficientUNet`, so a stage samples and trains it like
any other network.

Differences from an openimagen U-Net that the caller handles:

- the network is discrete-time: it is fed integer timesteps ``k`` (and, for a
  super-resolution stage, the integer noise level as ``class_labels``), not continuous t;
  the stage converts (``openimagen.diffusion.discrete_index``);
- with ``learned_variance`` its output has twice the image channels: the prediction, then the
  "learned_range" variance head (Nichol & Dhariwal 2021, sec. 3.1);
- the text mask is not passed: IF's pipelines give the U-Net all 77 token positions (pad
  positions hold T5's outputs there) and no attention mask, and the weights were trained so.

``diffusers`` is imported when a network is built, never at package import.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
from torch import nn

from openimagen.config import Config
from openimagen.errors import ConfigError

#: The diffusers class the backend builds (written to a stage's config.json).
DIFFUSERS_UNET_CLASS = "UNet2DConditionModel"


@dataclasses.dataclass(frozen=True)
class DiffusersUNetConfig(Config):
    """A stage network that is diffusers' ``UNet2DConditionModel`` (DeepFloyd IF)."""

    # the checkpoint's unet/config.json as diffusers reads it (keys starting with "_" dropped)
    diffusers_config: dict[str, Any]
    # the network's head: "eps" (diffusers "epsilon"), "v" ("v_prediction") or "x0" ("sample")
    prediction: Literal["eps", "v", "x0"] = "eps"
    # out_channels = 2 x image channels: the prediction, then the learned-range variance
    learned_variance: bool = True
    # the diffusers class built (only UNet2DConditionModel is supported)
    diffusers_class: str = DIFFUSERS_UNET_CLASS

    def validate(self) -> None:
        if self.diffusers_class != DIFFUSERS_UNET_CLASS:
            raise ConfigError(
                f"diffusers_class={self.diffusers_class!r}: only {DIFFUSERS_UNET_CLASS!r} is "
                "supported"
            )
        c = self.diffusers_config
        for key in ("in_channels", "out_channels", "sample_size"):
            if isinstance(c.get(key), bool) or not isinstance(c.get(key), int) or c[key] < 1:
                raise ConfigError(
                    f"diffusers_config.{key}={c.get(key)!r}: expected an integer >= 1"
                )
        if self.text_embed_dim < 1:
            raise ConfigError(
                "diffusers_config: neither encoder_hid_dim nor cross_attention_dim is an integer"
            )
        if self.learned_variance and c["out_channels"] % 2:
            raise ConfigError(
                f"diffusers_config.out_channels={c['out_channels']}: a learned-variance head "
                "needs an even number (prediction + variance)"
            )
        if c["in_channels"] not in (self.out_channels, 2 * self.out_channels):
            raise ConfigError(
                f"diffusers_config.in_channels={c['in_channels']}: expected {self.out_channels} "
                f"(a base stage) or {2 * self.out_channels} (super-resolution: x_t + low-res)"
            )
        if self.super_resolution and c.get("class_embed_type") != "timestep":
            raise ConfigError(
                "diffusers_config.class_embed_type: a super-resolution U-Net must embed its "
                f"noise level (class_embed_type 'timestep'), got {c.get('class_embed_type')!r}"
            )

    # -- what the rest of openimagen reads, named as on UNetConfig ------------------------------
    @property
    def out_channels(self) -> int:
        """Image channels (those of x_t), without the variance head."""
        n = int(self.diffusers_config["out_channels"])
        return n // 2 if self.learned_variance else n

    @property
    def in_channels(self) -> int:
        return self.out_channels

    @property
    def super_resolution(self) -> bool:
        """The U-Net takes the upsampled low-res image as extra input channels."""
        return int(self.diffusers_config["in_channels"]) == 2 * self.out_channels

    @property
    def text_embed_dim(self) -> int:
        """Width of the text embeddings it reads (``encoder_hid_dim`` projects them in)."""
        c = self.diffusers_config
        for key in ("encoder_hid_dim", "cross_attention_dim"):
            value = c.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return 0

    @property
    def image_size(self) -> int:
        return int(self.diffusers_config["sample_size"])


class DiffusersUNet(nn.Module):
    """diffusers' ``UNet2DConditionModel`` behind EfficientUNet's forward signature.

    ``unet`` is the diffusers module itself (its weights are this module's ``unet.*``).
    """

    def __init__(self, config: DiffusersUNetConfig):
        super().__init__()
        from diffusers import UNet2DConditionModel

        self.config = config
        self.unet = UNet2DConditionModel.from_config(dict(config.diffusers_config))

    @staticmethod
    def block_types() -> tuple[type[nn.Module], ...]:
        """The diffusers module types that hold one block's weights and use them only inside
        their own forward (res blocks, attention, resamplers): the units ``train.fsdp``
        shards. The time, class and text-pooling embeddings stay in the root unit."""
        from diffusers.models.attention_processor import Attention
        from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D

        return (ResnetBlock2D, Attention, Downsample2D, Upsample2D)

    def forward(
        self,
        x_t: torch.Tensor,
        timestep: torch.Tensor,
        text_embeds: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        lowres: torch.Tensor | None = None,
        aug_level: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Raw output [B, C or 2C, H, W] (in x_t's dtype) for x_t [B, C, H, W] at discrete ``timestep``
        [B]; SR stages take ``lowres`` [B, C, H, W] and the discrete noise level ``aug_level``
        [B] (fed as ``class_labels``). ``text_mask`` is not used (module docstring)."""
        dtype = self.unet.dtype
        sample = x_t if lowres is None else torch.cat([x_t, lowres], dim=1)  # [B, C or 2C, H, W]
        out = self.unet(
            sample.to(dtype),
            timestep,
            encoder_hidden_states=text_embeds.to(dtype),
            class_labels=aug_level if self.config.super_resolution else None,
            return_dict=False,
        )[0]
        return out.to(x_t.dtype)


def count_diffusers_parameters(config: DiffusersUNetConfig) -> int:
    """Number of parameters of ``DiffusersUNet(config)``, built on the meta device."""
    with torch.device("meta"):
        model = DiffusersUNet(config)
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "DIFFUSERS_UNET_CLASS",
    "DiffusersUNet",
    "DiffusersUNetConfig",
    "count_diffusers_parameters",
]
