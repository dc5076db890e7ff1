"""Building blocks of the Efficient U-Net (Saharia et al. 2022, appendix B.1).

Every block is written for speed: convolutions are plain ``nn.Conv2d`` (channels_last
friendly), attention is ``torch.nn.functional.scaled_dot_product_attention``, nothing loops
over the batch in Python, and the per-block conditioning (scale and shift) is computed by
ONE linear layer in the U-Net for all blocks at once and handed to each block.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def num_groups(channels: int, max_groups: int = 32) -> int:
    """Largest group count <= ``max_groups`` that divides ``channels`` (GroupNorm)."""
    return math.gcd(channels, max_groups)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups(channels), channels, eps=1e-5)


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style sinusoidal features of a continuous scalar in [0, 1].

    ``t`` is scaled by 1000 so that the fastest frequencies still vary across [0, 1]
    (as with the 1000 discrete steps of DDPM, Ho et al. 2020). Returns [B, dim].
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )  # [half]
    args = (t.float() * 1000.0)[:, None] * freqs[None]  # [B, half]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)  # [B, 2*half]
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb  # [B, dim]


class ScalarEmbedding(nn.Module):
    """Sinusoidal features -> MLP, for the diffusion time and the augmentation level."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = sinusoidal_embedding(t, self.dim).to(self.mlp[0].weight.dtype)  # [B, dim]
        return self.mlp(emb)  # [B, dim]


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, FiLM (scale, shift) from the conditioning, GroupNorm-SiLU-conv.

    The paper's ResNetBlock (Fig. A.27) with conditioning "CombineEmbs" as a
    scale-shift of the second normalisation. The scale/shift come in precomputed
    (``film`` [B, 2*out_channels]) so that the whole U-Net needs one linear layer for them.
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.out_channels = out_channels
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # [B, Co, H, W]
        scale, shift = film[:, :, None, None].chunk(2, dim=1)  # 2 x [B, Co, 1, 1]
        h = torch.addcmul(shift, self.norm2(h), scale + 1.0)  # norm(h) * (1 + s) + b
        h = self.conv2(self.dropout(F.silu(h)))  # [B, Co, H, W]
        return h + (x if self.skip is None else self.skip(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W spatial tokens, pre-GroupNorm, residual."""

    def __init__(self, channels: int, head_dim: int):
        super().__init__()
        self.heads = channels // head_dim
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        # contiguous: SDPA's fused CPU kernel needs a unit-stride last dimension, otherwise it
        # falls back to the math path (benchmarks/unet_vs_imagen_pytorch.py: 1.07x step)
        q, k, v = qkv.transpose(-1, -2).contiguous().unbind(1)  # 3 x [B, heads, HW, hd]
        y = F.scaled_dot_product_attention(q, k, v)  # [B, heads, HW, hd]
        y = y.transpose(-1, -2).reshape(b, c, h, w)  # [B, C, H, W]
        return x + self.out(y)


class CrossAttention(nn.Module):
    """Image tokens attend to the text tokens plus one learned null token (Imagen sec. 2.3).

    The null key/value is always attendable, so a sample whose text mask is all False
    (the unconditional branch of classifier-free guidance) is well defined and finite.
    """

    def __init__(self, channels: int, context_dim: int, head_dim: int):
        super().__init__()
        self.heads = channels // head_dim
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.kv = nn.Linear(context_dim, 2 * channels)
        self.null_kv = nn.Parameter(torch.randn(2, channels) * 0.02)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, attn_mask: torch.Tensor
    ) -> torch.Tensor:
        """x [B, C, H, W]; context [B, L, Dc]; attn_mask [B, 1, 1, L+1] bool (True = attend)."""
        b, c, h, w = x.shape
        hd = c // self.heads
        q = self.q(self.norm(x)).reshape(b, self.heads, hd, h * w).transpose(-1, -2).contiguous()
        kv = self.kv(context)  # [B, L, 2C]
        null = self.null_kv.reshape(1, 1, 2 * c).to(kv.dtype).expand(b, 1, 2 * c)
        kv = torch.cat([null, kv], dim=1)  # [B, L+1, 2C]
        k, v = kv.reshape(b, -1, 2, self.heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # [B, heads, HW, hd]
        y = y.transpose(-1, -2).reshape(b, c, h, w)  # [B, C, H, W]
        return x + self.out(y)


class Downsample(nn.Module):
    """Strided 3x3 convolution: halves H and W."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 convolution (no checkerboard artefacts)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
