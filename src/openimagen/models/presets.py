"""Named U-Net configs: tiny ones for tests, shapes-world ones for CPU training, and the
paper's sizes (Saharia et al. 2022, appendix B/F: 2B base 64x64, 600M 64->256, 400M 256->1024).

Presets are plain :class:`UNetConfig` values, not subclasses. Parameter counts are computed on
the meta device, so describing the 2B model allocates no memory.
"""

from __future__ import annotations

from typing import Any

import torch

from openimagen.errors import InvalidArgumentError
from openimagen.models.diffusers_unet import DiffusersUNetConfig, count_diffusers_parameters
from openimagen.models.unet import EfficientUNet, UNetConfig

T5_XXL_DIM = 4096  # width of T5-XXL encoder embeddings (the paper's text encoder)
MINILM_DIM = 384  # width of the bundled all-MiniLM-L6-v2 encoder

# Our small presets predict v (Salimans & Ho 2022): at high noise an eps head turns into a huge
# x0 estimate (x0 = (x_t - sigma eps) / alpha with alpha -> 0), and with a few hundred CPU steps
# of training that leaves visible noise in the samples. Measured on the one-colour shapes world
# (tests/train/test_train_learns_colour.py, 300 steps): eps gave 7/16 green objects and grey
# noise, v gave 15/16 on a black background. The paper presets keep the paper's eps.
PRESETS: dict[str, UNetConfig] = {
    # -- tests: tiny and fast; text width matches the bundled MiniLM encoder ----------------
    "tiny-base": UNetConfig(
        image_size=32,
        base_channels=16,
        channel_mults=(1, 2),
        num_res_blocks=(1, 1),
        cross_attention_levels=(False, True),
        self_attention_levels=(False, True),
        attention_head_dim=16,
        text_embed_dim=MINILM_DIM,
        cond_dim=32,
        prediction="v",
    ),
    "tiny-sr": UNetConfig(
        image_size=32,
        base_channels=16,
        channel_mults=(1, 2),
        num_res_blocks=(1, 1),
        cross_attention_levels=(False, True),
        self_attention_levels=(False, False),  # SR: no self-attention (fully convolutional)
        attention_head_dim=16,
        text_embed_dim=MINILM_DIM,
        cond_dim=32,
        super_resolution=True,
        prediction="v",
    ),
    # -- shapes world: trains on a CPU (ours) ------------------------------------------------
    "shapes-base-32": UNetConfig(
        image_size=32,
        base_channels=64,
        channel_mults=(1, 2, 3),
        num_res_blocks=(1, 2, 3),  # Efficient U-Net: more blocks at lower resolution
        cross_attention_levels=(False, True, True),
        self_attention_levels=(False, True, True),
        attention_head_dim=32,
        text_embed_dim=MINILM_DIM,
        cond_dim=256,
        prediction="v",
    ),
    "shapes-sr-32-128": UNetConfig(
        image_size=128,
        base_channels=32,
        channel_mults=(1, 2, 4, 4),
        num_res_blocks=(1, 2, 3, 3),
        cross_attention_levels=(False, False, False, True),  # text only at 16x16
        self_attention_levels=(False, False, False, False),  # none at 128 (nor anywhere)
        attention_head_dim=32,
        text_embed_dim=MINILM_DIM,
        cond_dim=256,
        super_resolution=True,
        prediction="v",
    ),
    # -- the paper's sizes (T5-XXL text) -------------------------------------------------------
    # 2B base 64x64. Paper: width 512, 3 res blocks per level, attention at 32/16/8 (appendix
    # B.1 / F). Channel mults (1, 2, 3, 5) and cond width 2048 are ours, tuned to ~2B.
    "imagen-base-64": UNetConfig(
        image_size=64,
        base_channels=512,
        channel_mults=(1, 2, 3, 5),
        num_res_blocks=(3, 3, 3, 3),
        cross_attention_levels=(False, True, True, True),
        self_attention_levels=(False, True, True, True),
        attention_head_dim=64,
        text_embed_dim=T5_XXL_DIM,
        cond_dim=2048,
    ),
    # 600M SR 64->256 (Fig. A.30): Efficient U-Net, width 128, blocks (2, 4, 8, 8, 8) with more
    # blocks at low resolution, text cross-attention only at the lowest resolution and no
    # self-attention follow the paper; mults (1, 2, 4, 6, 7) and cond width 512 are ours (~600M).
    "imagen-sr-64-256": UNetConfig(
        image_size=256,
        base_channels=128,
        channel_mults=(1, 2, 4, 6, 7),
        num_res_blocks=(2, 4, 8, 8, 8),
        cross_attention_levels=(False, False, False, False, True),
        self_attention_levels=(False, False, False, False, False),
        attention_head_dim=64,
        text_embed_dim=T5_XXL_DIM,
        cond_dim=512,
        super_resolution=True,
        downsample_first=True,  # Fig. A.30: level 0 at half resolution
    ),
    # 400M SR 256->1024, trained on 256x256 crops of 1024 images (paper sec. 2.6 / B.1).
    # Paper: Efficient U-Net, cross-attention only at the lowest resolution, no self-attention.
    # Mults (1, 2, 4, 4, 6), blocks (2, 2, 4, 8, 10) and cond width 512 are ours (~400M).
    "imagen-sr-256-1024": UNetConfig(
        image_size=256,
        base_channels=128,
        channel_mults=(1, 2, 4, 4, 6),
        num_res_blocks=(2, 2, 4, 8, 10),
        cross_attention_levels=(False, False, False, False, True),
        self_attention_levels=(False, False, False, False, False),
        attention_head_dim=64,
        text_embed_dim=T5_XXL_DIM,
        cond_dim=512,
        super_resolution=True,
        downsample_first=True,  # Fig. A.30: level 0 at half resolution
    ),
}

# the paper's stated parameter counts (Saharia et al. 2022, sec. 2.6 / appendix)
PAPER_PARAMETERS: dict[str, int] = {
    "imagen-base-64": 2_000_000_000,
    "imagen-sr-64-256": 600_000_000,
    "imagen-sr-256-1024": 400_000_000,
}


def list_presets() -> list[str]:
    """Names of every preset, in definition order."""
    return list(PRESETS)


def get_preset(name: str, **overrides: Any) -> UNetConfig:
    """The preset ``name`` with field ``overrides`` applied (validated)."""
    if name not in PRESETS:
        raise InvalidArgumentError(
            "preset", name, "one of " + ", ".join(PRESETS), "pick a listed preset name"
        )
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]


def count_parameters(config: UNetConfig | DiffusersUNetConfig) -> int:
    """Number of parameters of ``EfficientUNet(config)`` (or of the diffusers U-Net a
    :class:`DiffusersUNetConfig` describes), built on the meta device (no memory)."""
    if isinstance(config, DiffusersUNetConfig):
        return count_diffusers_parameters(config)
    with torch.device("meta"):
        model = EfficientUNet(config)
    return sum(p.numel() for p in model.parameters())


def _human(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def describe_preset(name: str) -> str:
    """Multi-line description of a preset (printed by ``openimagen info --preset NAME``)."""
    cfg = get_preset(name)
    n = count_parameters(cfg)
    size = cfg.image_size
    shift = int(cfg.downsample_first and cfg.memory_efficient)  # level 0 at half resolution
    res = [size // 2 ** (i + shift) for i in range(cfg.num_levels)]
    kind = "super-resolution" if cfg.super_resolution else "base (text -> image)"

    def at(flags: tuple[bool, ...]) -> str:
        names = [f"{r}x{r}" for r, f in zip(res, flags, strict=True) if f]
        return ", ".join(names) or "none"

    lines = [
        f"preset      {name}",
        f"kind        {kind}, predicts {cfg.prediction}",
        f"resolution  {size}x{size} (levels {', '.join(str(r) for r in res)})",
        f"channels    {', '.join(str(c) for c in cfg.level_channels())}",
        f"res blocks  {', '.join(str(b) for b in cfg.num_res_blocks)}",
        f"self-attn   {at(cfg.self_attention_levels)}",
        f"cross-attn  {at(cfg.cross_attention_levels)} (head dim {cfg.attention_head_dim})",
        f"text dim    {cfg.text_embed_dim}, cond dim {cfg.cond_dim}",
        f"parameters  {n:,} ({_human(n)})",
    ]
    if name in PAPER_PARAMETERS:
        paper = PAPER_PARAMETERS[name]
        lines.append(f"paper       {_human(paper)} ({100 * (n - paper) / paper:+.1f}% difference)")
    return "\n".join(lines)
