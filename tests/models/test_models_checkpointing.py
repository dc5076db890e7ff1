"""Activation checkpointing: the same loss and gradients, with the blocks recomputed in backward."""

from __future__ import annotations

import pytest
import torch

from if_testutil import T5_DIM, if_unet
from openimagen.errors import InvalidArgumentError
from openimagen.models import (
    DiffusersUNet,
    DiffusersUNetConfig,
    EfficientUNet,
    get_preset,
    set_activation_checkpointing,
)
from openimagen.models.layers import ResBlock

D = 24


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def efficient(name: str) -> EfficientUNet:
    torch.manual_seed(0)
    # dropout on: the recomputed forward must draw the same dropout masks
    return EfficientUNet(get_preset(name, text_embed_dim=D, dropout=0.2, image_size=16))


def efficient_inputs(sr: bool) -> tuple[tuple, dict]:
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(3, 3, 16, 16, generator=g), torch.rand(3, generator=g)
    emb, mask = torch.randn(3, 5, D, generator=g), torch.ones(3, 5, dtype=torch.bool)
    mask[0, 3:] = False
    extra = {"lowres": torch.randn(3, 3, 16, 16, generator=g), "aug_level": t / 2} if sr else {}
    return (x, t, emb, mask), extra


def diffusers_model() -> DiffusersUNet:
    config = {k: v for k, v in if_unet(1, seed=0).config.items() if not k.startswith("_")}
    torch.manual_seed(0)
    return DiffusersUNet(DiffusersUNetConfig(diffusers_config=config))


def diffusers_inputs() -> tuple[tuple, dict]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 16, 16, generator=g)
    return (x, torch.tensor([10, 700]), torch.randn(2, 7, T5_DIM, generator=g)), {}


def loss_and_grads(model: torch.nn.Module, args: tuple, kwargs: dict, seed: int = 5):
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the dropout draws
    out = model(*args, **kwargs)
    loss = (out.float() - 0.3).square().mean()
    loss.backward()
    return loss.detach(), {
        n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
    }


def count_calls(model: torch.nn.Module, kind: type, part: str = "") -> list[int]:
    """Forward starts of every ``kind`` block, or of its submodule ``part`` (a pre-hook:
    torch's recomputation stops as soon as it has every saved tensor back, so a recomputed
    block need not run to its end)."""
    calls = [0]
    for m in model.modules():
        if isinstance(m, kind):
            target = getattr(m, part) if part else m
            target.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


CASES = {
    "efficient-base": (lambda: efficient("tiny-base"), lambda: efficient_inputs(False)),
    "efficient-sr": (lambda: efficient("tiny-sr"), lambda: efficient_inputs(True)),
    "diffusers-if": (diffusers_model, diffusers_inputs),
}


@pytest.mark.parametrize("case", list(CASES))
def test_checkpointing_gives_the_same_loss_and_gradients_and_recomputes_the_blocks(case):
    build, make_inputs = CASES[case]
    args, kwargs = make_inputs()
    model = build()
    if case.startswith("diffusers"):
        from diffusers.models.resnet import ResnetBlock2D as block
    else:
        block = ResBlock
    # diffusers' blocks: counted at their first convolution (a checkpointed block replays its
    # own forward, not its __call__, so a hook on the block itself sees one call)
    calls = count_calls(model, block, "" if block is ResBlock else "conv1")
    loss0, grads0 = loss_and_grads(model, args, kwargs)
    plain_calls = calls[0]
    assert set_activation_checkpointing(model, True) >= 1
    calls[0] = 0
    loss1, grads1 = loss_and_grads(model, args, kwargs)
    # recomputed in backward: every res block, ours and diffusers' (those of IF's
    # SimpleCrossAttn blocks and those that down- or upsample included)
    assert calls[0] == 2 * plain_calls > 0
    assert loss1 == loss0  # the forward is the same computation
    assert grads1.keys() == grads0.keys() and len(grads0) > 10
    for name, g in grads0.items():
        torch.testing.assert_close(grads1[name], g, rtol=1e-6, atol=1e-7, msg=name)
    # off again: back to one forward per block
    set_activation_checkpointing(model, False)
    calls[0] = 0
    loss2, _ = loss_and_grads(model, args, kwargs)
    assert calls[0] == plain_calls and loss2 == loss0


def test_efficient_unet_does_not_checkpoint_in_eval_mode_or_without_grad():
    model = efficient("tiny-base")
    set_activation_checkpointing(model, True)
    calls = count_calls(model, ResBlock)
    args, _ = efficient_inputs(False)
    with torch.no_grad():
        model.train()(*args)
    once = calls[0]
    calls[0] = 0
    model.eval()(*args).sum().backward()  # eval mode with grads: not checkpointed
    assert calls[0] == once > 0


def test_a_model_without_checkpointable_blocks_is_refused():
    with pytest.raises(InvalidArgumentError, match="model"):
        set_activation_checkpointing(torch.nn.Linear(2, 2))
    with pytest.raises(InvalidArgumentError, match="enabled"):
        set_activation_checkpointing(efficient("tiny-base"), 1)
