"""Imagen's Efficient U-Net (base and super-resolution) and its named presets."""

from openimagen.models.presets import (
    PAPER_PARAMETERS,
    PRESETS,
    count_parameters,
    describe_preset,
    get_preset,
    list_presets,
)
from openimagen.models.unet import EfficientUNet, UNetConfig

__all__ = [
    "PAPER_PARAMETERS",
    "PRESETS",
    "EfficientUNet",
    "UNetConfig",
    "count_parameters",
    "describe_preset",
    "get_preset",
    "list_presets",
]
