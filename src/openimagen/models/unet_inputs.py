"""The input checks of :class:`~openimagen.models.unet.EfficientUNet`'s forward."""

from __future__ import annotations

from typing import Any

import torch

from openimagen.errors import InvalidArgumentError, InvalidTypeError, ShapeError


def check_unet_inputs(cfg: Any, x_t, t, text_embeds, text_mask, lowres, aug_level) -> None:
    """Refuse inputs that do not fit ``cfg`` (a UNetConfig; not imported: unet.py imports
    this module), naming the argument and the expected shape."""
    if not isinstance(x_t, torch.Tensor):
        raise InvalidTypeError("x_t", x_t, "a torch.Tensor [B, C, H, W]")
    step = cfg.size_multiple
    if x_t.ndim != 4 or x_t.shape[1] != cfg.in_channels:
        raise ShapeError("x_t", x_t.shape, f"[B, {cfg.in_channels}, H, W]")
    b, _, h, w = x_t.shape
    if h % step or w % step:
        raise ShapeError("x_t", x_t.shape, f"H and W divisible by {step}")
    if not isinstance(t, torch.Tensor) or t.shape != (b,):
        raise ShapeError("t", tuple(getattr(t, "shape", ())), f"[{b}] (one time per sample)")
    if text_embeds is not None:
        if (
            text_embeds.ndim != 3
            or text_embeds.shape[0] != b
            or (text_embeds.shape[2] != cfg.text_embed_dim)
        ):
            raise ShapeError("text_embeds", text_embeds.shape, f"[{b}, L, {cfg.text_embed_dim}]")
        if text_mask is not None and tuple(text_mask.shape) != tuple(text_embeds.shape[:2]):
            raise ShapeError("text_mask", text_mask.shape, f"{list(text_embeds.shape[:2])}")
    elif text_mask is not None and (text_mask.ndim != 2 or text_mask.shape[0] != b):
        raise ShapeError("text_mask", text_mask.shape, f"[{b}, L]")
    if text_mask is not None and text_mask.dtype != torch.bool:
        raise InvalidArgumentError(
            "text_mask.dtype", text_mask.dtype, "torch.bool", "pass mask.bool()"
        )
    if cfg.super_resolution:
        if lowres is None or aug_level is None:
            missing = "lowres" if lowres is None else "aug_level"
            raise InvalidArgumentError(
                missing,
                None,
                "a tensor for a super-resolution U-Net",
                "pass lowres=[B, C, H, W] (the low-res image upsampled to x_t's size) and "
                "aug_level=[B] in [0, 1]",
            )
        if tuple(lowres.shape) != tuple(x_t.shape):
            raise ShapeError("lowres", lowres.shape, f"{list(x_t.shape)} (same as x_t)")
        if tuple(aug_level.shape) != (b,):
            raise ShapeError("aug_level", aug_level.shape, f"[{b}]")
    else:
        for name, value in (("lowres", lowres), ("aug_level", aug_level)):
            if value is not None:
                raise InvalidArgumentError(
                    name,
                    "a tensor",
                    "None for a base (non super-resolution) U-Net",
                    f"drop {name}, or use a config with super_resolution=True",
                )


__all__ = ["check_unet_inputs"]
