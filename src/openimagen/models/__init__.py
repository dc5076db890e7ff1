"""Imagen's Efficient U-Net (base and super-resolution) and its named presets; diffusers'
UNet2DConditionModel (DeepFloyd IF's weights) behind the same forward signature."""

from openimagen.models.checkpointing import set_activation_checkpointing
from openimagen.models.diffusers_unet import (
    DIFFUSERS_UNET_CLASS,
    DiffusersUNet,
    DiffusersUNetConfig,
    count_diffusers_parameters,
)
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
    "DIFFUSERS_UNET_CLASS",
    "PAPER_PARAMETERS",
    "PRESETS",
    "DiffusersUNet",
    "DiffusersUNetConfig",
    "EfficientUNet",
    "UNetConfig",
    "count_diffusers_parameters",
    "count_parameters",
    "describe_preset",
    "get_preset",
    "list_presets",
    "set_activation_checkpointing",
]
