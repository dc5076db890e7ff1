"""Activation checkpointing: keep fewer activations in training, recompute them in backward.

A checkpointed block stores only its inputs in the forward pass; backward runs the block
again to rebuild what it needs (Chen et al. 2016, "Training deep nets with sublinear memory
cost"). Results are unchanged: torch's non-reentrant checkpoint replays the block with the
same RNG state (dropout) and autocast state, so loss and gradients equal those without it.
It costs one more forward pass of every checkpointed block per step.

- openimagen's :class:`~openimagen.models.EfficientUNet` checkpoints each resolution level
  (its res blocks and attention, :class:`CheckpointedModule`), and only while the module is
  in training mode and gradients are enabled, so sampling and the EMA copy never pay for it;
- diffusers' ``UNet2DConditionModel`` (:class:`~openimagen.models.DiffusersUNet`) uses its own
  ``enable_gradient_checkpointing()``: each res block (and transformer block) of its down /
  mid / up blocks, non-reentrant too, whenever gradients are enabled; IF's SimpleCrossAttn
  blocks do not recompute their attention, nor the res blocks that down- or upsample.

It is a training option (``train.activation_checkpointing``), not part of a model's config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from openimagen.errors import InvalidArgumentError


class CheckpointedModule(nn.Module):
    """A module whose forward can run under ``torch.utils.checkpoint`` (off by default)."""

    activation_checkpointing: bool = False

    def run_checkpointed(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, checkpointed when enabled, training and gradients are on."""
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)


def set_activation_checkpointing(model: nn.Module, enabled: bool = True) -> int:
    """Turn activation checkpointing on (or off) in every block of ``model`` that has it.

    Returns how many modules were switched: openimagen's levels, or diffusers models (their
    own ``enable_gradient_checkpointing``). A model with none of them is refused.
    """
    if not isinstance(enabled, bool):
        raise InvalidArgumentError("enabled", enabled, "True or False", "pass a bool")
    count = 0
    for module in model.modules():
        if isinstance(module, CheckpointedModule):
            module.activation_checkpointing = enabled
            count += 1
        elif getattr(module, "_supports_gradient_checkpointing", False) and hasattr(
            module, "enable_gradient_checkpointing"
        ):  # a diffusers ModelMixin: it switches its own blocks
            if enabled:
                module.enable_gradient_checkpointing()
            else:
                module.disable_gradient_checkpointing()
            count += 1
    if count == 0:
        raise InvalidArgumentError(
            "model",
            type(model).__name__,
            "an EfficientUNet, a DiffusersUNet or a diffusers model that supports gradient "
            "checkpointing",
            "build the stage network with openimagen.models",
        )
    return count


__all__ = ["CheckpointedModule", "set_activation_checkpointing"]
