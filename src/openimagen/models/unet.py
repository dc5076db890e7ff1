"""The Efficient U-Net of Imagen (Saharia et al. 2022, appendix B.1, Figs. A.27-A.30).

Paper features, and where they are:
- more residual blocks at lower resolutions: ``UNetConfig.num_res_blocks`` per level;
- skip connections scaled by 1/sqrt(2): ``_SKIP_SCALE`` in ``EfficientUNet.forward``;
- memory-efficient ordering: a down level downsamples BEFORE its convolutions and an
  up level upsamples AFTER its convolutions (``memory_efficient=True``);
- conditioning vector = timestep embedding (sinusoidal -> MLP) + pooled text embedding
  (masked mean of layer-normed text embeddings -> linear) [+ aug-level embedding for SR];
- text cross-attention at chosen levels on the layer-normed text embeddings, with a
  learned null token so an all-False mask (classifier-free guidance) is valid;
- super-resolution: the upsampled low-res image is concatenated to x_t as input channels.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from openimagen.config import Config
from openimagen.errors import ConfigError, InvalidTypeError
from openimagen.models.checkpointing import CheckpointedModule
from openimagen.models.layers import (
    CrossAttention,
    Downsample,
    ResBlock,
    ScalarEmbedding,
    SelfAttention,
    Upsample,
    group_norm,
)
from openimagen.models.text_refiner import TextRefiner
from openimagen.models.unet_inputs import check_unet_inputs

_SKIP_SCALE = 1.0 / math.sqrt(2.0)  # Imagen appendix B.1: skip connections scaled by 1/sqrt(2)


@dataclasses.dataclass(frozen=True)
class UNetConfig(Config):
    """Everything that defines an :class:`EfficientUNet`; stored as ``config.json``."""

    # training resolution (the net is fully convolutional and runs at any multiple of
    # 2**(levels-1))
    image_size: int
    # width of level 0; level i has base_channels * channel_mults[i] channels
    base_channels: int
    # channel multiplier per level (highest resolution first)
    channel_mults: tuple[int, ...]
    # residual blocks per level; Efficient U-Net puts more at the lower resolutions
    num_res_blocks: tuple[int, ...]
    # text cross-attention per level
    cross_attention_levels: tuple[bool, ...]
    # spatial self-attention per level (keep it off at high resolution)
    self_attention_levels: tuple[bool, ...]
    # width D of the text encoder's token embeddings
    text_embed_dim: int
    # width of the conditioning vector (timestep + pooled text [+ aug level])
    cond_dim: int
    # channels of the noisy image x_t
    in_channels: int = 3
    # channels of the network output
    out_channels: int = 3
    # channels per attention head
    attention_head_dim: int = 64
    # dropout inside residual blocks
    dropout: float = 0.0
    # super-resolution variant: takes lowres (upsampled) and aug_level
    super_resolution: bool = False
    # what the head predicts; the diffusion code converts it
    prediction: Literal["eps", "v", "x0"] = "eps"
    # Efficient U-Net ordering: downsample before / upsample after a level's convolutions
    memory_efficient: bool = True
    # with memory_efficient: level 0 also works at half resolution (downsample right after
    # the input convolution, upsample right before the output one), as the paper's SR U-Nets
    # do (Fig. A.30). Cuts an SR step's FLOPs ~4x; input sizes must divide by 2**levels.
    downsample_first: bool = False
    # trainable transformer layers over the projected text tokens before cross-attention
    # (models/text_refiner.py); 0 is Imagen's plain projection
    text_refiner_layers: int = 0

    @property
    def num_levels(self) -> int:
        return len(self.channel_mults)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2 ** (self.num_levels - 1 + int(self.downsample_first and self.memory_efficient))

    def level_channels(self) -> tuple[int, ...]:
        return tuple(self.base_channels * m for m in self.channel_mults)

    def validate(self) -> None:
        def positive(name: str, value: int) -> None:
            if value < 1:
                raise ConfigError(f"{name}={value!r}: must be a positive integer")

        for name in (
            "image_size",
            "base_channels",
            "text_embed_dim",
            "cond_dim",
            "in_channels",
            "out_channels",
            "attention_head_dim",
        ):
            positive(name, getattr(self, name))
        n = len(self.channel_mults)
        if n < 1:
            raise ConfigError("channel_mults=(): needs at least one level")
        for name in ("num_res_blocks", "cross_attention_levels", "self_attention_levels"):
            value = getattr(self, name)
            if len(value) != n:
                raise ConfigError(
                    f"{name}={value!r}: has {len(value)} entries but channel_mults has {n}; "
                    "give one entry per level"
                )
        for i, m in enumerate(self.channel_mults):
            positive(f"channel_mults[{i}]", m)
        for i, r in enumerate(self.num_res_blocks):
            positive(f"num_res_blocks[{i}]", r)
        if self.image_size % self.size_multiple:
            raise ConfigError(
                f"image_size={self.image_size}: must be divisible by {self.size_multiple} "
                f"for {n} levels (downsample_first={self.downsample_first})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout!r}: must be in [0, 1)")
        if self.text_refiner_layers < 0 or (
            self.text_refiner_layers and self.cond_dim % self.attention_head_dim
        ):
            raise ConfigError(
                f"text_refiner_layers={self.text_refiner_layers!r}: must be >= 0, and "
                f"attention_head_dim={self.attention_head_dim} must divide cond_dim={self.cond_dim}"
            )
        if self.cond_dim % 2:
            raise ConfigError(f"cond_dim={self.cond_dim}: must be even (sinusoidal features)")
        for i, ch in enumerate(self.level_channels()):
            attends = self.cross_attention_levels[i] or self.self_attention_levels[i]
            if attends and ch % self.attention_head_dim:
                raise ConfigError(
                    f"attention_head_dim={self.attention_head_dim}: must divide the "
                    f"{ch} channels of level {i}, which has attention"
                )


class _Level(CheckpointedModule):
    """One resolution level: [resample] -> res blocks -> [self-attn] [cross-attn] -> [resample].

    With activation checkpointing on (``models.checkpointing``) its forward keeps only its
    inputs and is recomputed in backward."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        blocks: int,
        cfg: UNetConfig,
        self_attention: bool,
        cross_attention: bool,
        before: nn.Module | None,
        after: nn.Module | None,
        block_in: int | None = None,
    ):
        super().__init__()
        self.before, self.after = before, after
        first = in_channels if block_in is None else block_in
        self.blocks = nn.ModuleList(
            [ResBlock(first if j == 0 else channels, channels, cfg.dropout) for j in range(blocks)]
        )
        hd = cfg.attention_head_dim
        self.self_attn = SelfAttention(channels, hd) if self_attention else None
        self.cross_attn = CrossAttention(channels, cfg.cond_dim, hd) if cross_attention else None

    def film_sizes(self) -> list[int]:
        return [2 * b.out_channels for b in self.blocks]

    def forward(
        self,
        h: torch.Tensor,
        films: tuple[torch.Tensor, ...],
        context: torch.Tensor,
        attn_mask: torch.Tensor,
        skip: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Everything but ``after`` (the caller taps the down path's skip before it)."""
        return self.run_checkpointed(self._body, h, films, context, attn_mask, skip)

    def _body(self, h, films, context, attn_mask, skip):
        if self.before is not None:
            h = self.before(h)
        if skip is not None:
            h = torch.cat([h, skip * _SKIP_SCALE], dim=1)  # [B, Ch + Cs, h, w]
        for block, film in zip(self.blocks, films, strict=True):
            h = block(h, film)
        if self.self_attn is not None:
            h = self.self_attn(h)
        if self.cross_attn is not None:
            h = self.cross_attn(h, context, attn_mask)
        return h


class EfficientUNet(nn.Module):
    """Imagen's Efficient U-Net, base (text -> image) or super-resolution, from one config."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise InvalidTypeError("config", config, "a UNetConfig")
        self.config = cfg = config
        chs = cfg.level_channels()
        d = cfg.cond_dim
        in_ch = cfg.in_channels * (2 if cfg.super_resolution else 1)
        self.init_conv = nn.Conv2d(in_ch, cfg.base_channels, 3, padding=1)

        # conditioning (appendix B.1): time embedding + pooled text [+ aug level]
        self.time_embed = ScalarEmbedding(d)
        self.aug_embed = ScalarEmbedding(d) if cfg.super_resolution else None
        self.text_norm = nn.LayerNorm(cfg.text_embed_dim)  # layer norm on the text embeddings
        self.text_proj = nn.Linear(cfg.text_embed_dim, d)  # context for every cross-attention
        self.pool_proj = nn.Linear(cfg.text_embed_dim, d)  # pooled text -> conditioning vector
        self.null_pooled = nn.Parameter(torch.zeros(d))  # pooled embedding of an empty mask
        layers, hd = cfg.text_refiner_layers, cfg.attention_head_dim
        self.text_refiner = TextRefiner(d, layers, hd) if layers else None

        self.down = self._down_path()
        # middle, at the lowest resolution (ours: res block, attention as the last level, res block)
        prev = chs[-1]
        self.mid = _Level(prev, prev, 2, cfg, cfg.self_attention_levels[-1],
                          cfg.cross_attention_levels[-1], None, None)  # fmt: skip
        self.up = self._up_path()
        prev = chs[0]  # the up path ends at level 0's width

        self.out_norm = group_norm(prev)
        self.out_conv = nn.Conv2d(prev, cfg.out_channels, 3, padding=1)

        # every res block's (scale, shift) from ONE linear layer (fewer kernel launches)
        self._film_sizes = [s for lv in self._levels() for s in lv.film_sizes()]
        self.film = nn.Linear(d, sum(self._film_sizes))

    def _down_path(self) -> nn.ModuleList:
        """One level per resolution, highest first; one skip per level, at its output."""
        cfg, chs, n = self.config, self.config.level_channels(), self.config.num_levels
        eff = cfg.memory_efficient
        first = eff and cfg.downsample_first  # level 0 works at half resolution too
        down, prev = nn.ModuleList(), cfg.base_channels
        for i in range(n):
            before = Downsample(prev, prev) if (eff and (i > 0 or first)) else None
            after = Downsample(chs[i], chs[i]) if (not eff and i < n - 1) else None
            down.append(_Level(prev, chs[i], cfg.num_res_blocks[i], cfg,
                               cfg.self_attention_levels[i], cfg.cross_attention_levels[i],
                               before, after))  # fmt: skip
            prev = chs[i]
        return down

    def _up_path(self) -> nn.ModuleList:
        """Lowest resolution first: concat the (scaled) skip, res blocks, attention, upsample."""
        cfg, chs, n = self.config, self.config.level_channels(), self.config.num_levels
        eff = cfg.memory_efficient
        first = eff and cfg.downsample_first
        up, prev = nn.ModuleList(), chs[-1]
        for i in reversed(range(n)):
            block_in = prev + chs[i]
            if eff:
                before = None
                if i > 0:
                    after = Upsample(chs[i], chs[i - 1])
                else:  # back to full resolution after level 0 when it ran at half
                    after = Upsample(chs[0], chs[0]) if first else None
            else:
                before = Upsample(prev, prev) if i < n - 1 else None
                after = None
            up.append(_Level(prev, chs[i], cfg.num_res_blocks[i], cfg,
                             cfg.self_attention_levels[i], cfg.cross_attention_levels[i],
                             before, after, block_in=block_in))  # fmt: skip
            prev = chs[i - 1] if (eff and i > 0) else chs[i]
        return up

    def _levels(self) -> list[_Level]:
        return [*self.down, self.mid, *self.up]

    @staticmethod
    def block_types() -> tuple[type[nn.Module], ...]:
        """The module types that hold one block's weights and use them only inside their own
        forward: the units ``train.fsdp`` shards (a level is not one: the U-Net calls its
        down- or upsampler outside the level's forward)."""
        return (ResBlock, SelfAttention, CrossAttention, Downsample, Upsample, TextRefiner)

    # -- forward ----------------------------------------------------------------------------
    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        text_embeds: torch.Tensor | None,
        text_mask: torch.Tensor | None,
        lowres: torch.Tensor | None = None,
        aug_level: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict eps / v / x0 (per ``config.prediction``) for x_t [B, C, H, W] at time t [B].

        ``text_mask`` False marks padding; an all-False mask or ``text_embeds=None`` is the
        unconditional model (classifier-free guidance).
        """
        check_unet_inputs(self.config, x_t, t, text_embeds, text_mask, lowres, aug_level)
        cfg = self.config
        b = x_t.shape[0]
        dtype = self.init_conv.weight.dtype

        # conditioning vector [B, d]
        cond = self.time_embed(t)  # [B, d]
        if text_embeds is None:
            context = x_t.new_zeros(b, 0, cfg.cond_dim, dtype=dtype)  # [B, 0, d]
            attn_mask = torch.ones(b, 1, 1, 1, dtype=torch.bool, device=x_t.device)
            pooled = self.null_pooled.expand(b, -1)  # [B, d]
        else:
            if text_mask is None:
                text_mask = torch.ones(
                    text_embeds.shape[:2], dtype=torch.bool, device=text_embeds.device
                )
            text = self.text_norm(text_embeds.to(dtype))  # [B, L, D]
            context = self.text_proj(text)  # [B, L, d]
            if self.text_refiner is not None:
                context = self.text_refiner(context, text_mask)
            m = text_mask.to(text.dtype)[..., None]  # [B, L, 1]
            # masked mean; where() rather than multiply so masked NaN/inf cannot leak in
            summed = torch.where(text_mask[..., None], text, 0.0).sum(1)  # [B, D]
            count = m.sum(1)  # [B, 1]
            pooled = self.pool_proj(summed / count.clamp(min=1.0))  # [B, d]
            pooled = torch.where(count > 0, pooled, self.null_pooled.to(pooled.dtype))
            context = torch.where(text_mask[..., None], context, 0.0)
            keep_null = text_mask.new_ones(b, 1)
            attn_mask = torch.cat([keep_null, text_mask], 1)[:, None, None, :]  # [B,1,1,L+1]
        cond = cond + pooled
        if self.aug_embed is not None:
            cond = cond + self.aug_embed(aug_level)
        films = self.film(F.silu(cond)).split(self._film_sizes, dim=1)  # per res block

        x = x_t if lowres is None else torch.cat([x_t, lowres], dim=1)  # [B, C(*2), H, W]
        h = self.init_conv(x.to(dtype))  # [B, base, H, W]
        k = 0
        skips = []
        for level in self.down:
            nb = len(level.blocks)
            h = level(h, films[k : k + nb], context, attn_mask)
            k += nb
            skips.append(h)  # one skip per level, tapped before any downsampling
            if level.after is not None:
                h = level.after(h)
        nb = len(self.mid.blocks)
        h = self.mid(h, films[k : k + nb], context, attn_mask)
        k += nb
        for level in self.up:
            nb = len(level.blocks)
            h = level(h, films[k : k + nb], context, attn_mask, skip=skips.pop())
            k += nb
            if level.after is not None:
                h = level.after(h)
        return self.out_conv(F.silu(self.out_norm(h)))  # [B, out_channels, H, W]
