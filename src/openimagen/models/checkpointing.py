"""Activation checkpointing: keep fewer activations in training, recompute them in backward.

A checkpointed block stores only its inputs in the forward pass; backward runs the block
again to rebuild what it needs (Chen et al. 2016, "Training deep nets with sublinear memory
cost"). Results are unchanged: torch's non-reentrant checkpoint replays the block with the
same RNG state (dropout) and autocast state, so loss and gradients equal those without it.
It costs one more forward pass of every checkpointed block per step.

- openimagen's :class:`~openimagen.models.EfficientUNet` checkpoints each resolution level
  (its res blocks and attention, :class:`CheckpointedModule`), and only while the module is
  in training mode and gradients are enabled, so sampling and the EMA copy never pay for it;
- diffusers' ``UNet2DConditionModel`` (:class:`~openimagen.models.DiffusersUNet`) checkpoints
  each of its ``block_types()`` (diffusers' res blocks, attention modules and resamplers) on
  its own, while training with gradients on. diffusers' own ``enable_gradient_checkpointing``
  is not used: its SimpleCrossAttn blocks, 3 of IF stage I's 4 levels, recompute nothing,
  so it saved nothing measurable on an IF-shaped U-Net (docs/training.md, "Memory at real
  sizes"). Other diffusers models use their own ``enable_gradient_checkpointing``.

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


def _checkpointed_forward(module: nn.Module) -> Callable[..., Any]:
    """``module``'s own forward under a non-reentrant checkpoint while it trains with
    gradients on; set as the instance's ``forward`` (``__call__``, and with it any hooks such
    as FSDP's, is unchanged)."""
    forward = type(module).forward.__get__(module)

    def run(*args: Any, **kwargs: Any) -> Any:
        if module.training and torch.is_grad_enabled():
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    return run


def _switch_blocks(model: nn.Module, enabled: bool) -> int:
    """Checkpoint (or stop checkpointing) every block of a DiffusersUNet on its own."""
    count, blocks = 0, model.block_types()
    for module in model.modules():
        if isinstance(module, blocks):
            if enabled and "forward" not in module.__dict__:
                module.forward = _checkpointed_forward(module)
            elif not enabled and "forward" in module.__dict__:
                del module.forward
            count += 1
    return count


def set_activation_checkpointing(model: nn.Module, enabled: bool = True) -> int:
    """Turn activation checkpointing on (or off) in every block of ``model`` that has it.

    Returns how many modules were switched: openimagen's levels, a DiffusersUNet's blocks,
    or diffusers models (their own ``enable_gradient_checkpointing``). A model with none of
    them is refused.
    """
    from openimagen.models.diffusers_unet import DiffusersUNet

    if not isinstance(enabled, bool):
        raise InvalidArgumentError("enabled", enabled, "True or False", "pass a bool")
    if isinstance(model, DiffusersUNet):
        return _switch_blocks(model, enabled)
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
