"""Efficient U-Net: shapes, config checks, masking, batch independence, save/load, gradients."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from openimagen.errors import ConfigError, InvalidArgumentError, ShapeError
from openimagen.models import EfficientUNet, UNetConfig, get_preset

D = 24  # small text width for speed


def make(name: str = "tiny-base", seed: int = 0, **overrides) -> EfficientUNet:
    torch.manual_seed(seed)
    model = EfficientUNet(get_preset(name, text_embed_dim=D, **overrides))
    return model.eval()


def inputs(b: int, size: int, *, sr: bool = False, seq: int = 5, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, size, size, generator=g)
    t = torch.rand(b, generator=g)
    emb = torch.randn(b, seq, D, generator=g)
    mask = torch.ones(b, seq, dtype=torch.bool)
    mask[:, seq - 2 :] = False  # last two tokens are padding
    extra = {}
    if sr:
        extra = {"lowres": torch.randn(b, 3, size, size, generator=g), "aug_level": t * 0.5}
    return x, t, emb, mask, extra


@pytest.mark.parametrize("size", [16, 32, 48])
def test_base_output_shape(size):
    model = make()
    x, t, emb, mask, _ = inputs(2, size)
    with torch.no_grad():
        out = model(x, t, emb, mask)
    assert out.shape == (2, 3, size, size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("size", [16, 64])  # 64 > the preset's training size 32
def test_sr_output_shape_and_fully_convolutional(size):
    model = make("tiny-sr")
    assert size != model.config.image_size
    x, t, emb, mask, extra = inputs(2, size, sr=True)
    with torch.no_grad():
        out = model(x, t, emb, mask, **extra)
    assert out.shape == (2, 3, size, size)
    assert torch.isfinite(out).all()


def test_downsample_first_halves_level_0_and_cuts_the_flops():
    from torch.utils.flop_counter import FlopCounterMode

    plain, first = make("tiny-sr"), make("tiny-sr", downsample_first=True)
    assert first.config.size_multiple == 2 * plain.config.size_multiple == 4
    x, t, emb, mask, extra = inputs(1, 32, sr=True)
    flops = []
    for model in (plain, first):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            out = model(x, t, emb, mask, **extra)
        assert out.shape == x.shape and torch.isfinite(out).all()
        flops.append(counter.get_total_flops())
    assert flops[1] < 0.5 * flops[0]  # level 0 (the widest in pixels) now runs at 1/4 the area
    with pytest.raises(ShapeError, match="divisible by 4"):
        first(*inputs(1, 18, sr=True)[:4], **inputs(1, 18, sr=True)[4])
    with pytest.raises(ConfigError, match="divisible by 4"):
        get_preset("tiny-sr", image_size=18, downsample_first=True)


def test_standard_ordering_and_other_heads_also_build():
    model = make(memory_efficient=False, out_channels=6, prediction="v")
    x, t, emb, mask, _ = inputs(1, 32)
    with torch.no_grad():
        assert model(x, t, emb, mask).shape == (1, 6, 32, 32)


def test_config_json_round_trip():
    cfg = get_preset("tiny-sr", dropout=0.1, prediction="v")
    again = UNetConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg
    assert isinstance(again.channel_mults, tuple)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"num_res_blocks": (1,)}, "num_res_blocks"),
        ({"cross_attention_levels": (True, True, True)}, "cross_attention_levels"),
        ({"image_size": 33}, "image_size"),
        ({"attention_head_dim": 12}, "attention_head_dim"),
        ({"base_channels": 0}, "base_channels"),
        ({"channel_mults": (1, 0)}, "channel_mults[1]"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_config_names_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[")):
        get_preset("tiny-base", **overrides)


def test_bad_config_from_dict_names_the_field():
    data = get_preset("tiny-base").to_dict()
    data["prediction"] = "noise"
    with pytest.raises(ConfigError, match="prediction"):
        UNetConfig.from_dict(data)


def test_sr_requires_lowres_and_aug_level_and_base_rejects_them():
    sr = make("tiny-sr")
    x, t, emb, mask, extra = inputs(1, 16, sr=True)
    with pytest.raises(InvalidArgumentError, match="lowres"):
        sr(x, t, emb, mask, aug_level=extra["aug_level"])
    with pytest.raises(InvalidArgumentError, match="aug_level"):
        sr(x, t, emb, mask, lowres=extra["lowres"])
    base = make()
    with pytest.raises(InvalidArgumentError, match="lowres"):
        base(x, t, emb, mask, lowres=extra["lowres"])
    with pytest.raises(InvalidArgumentError, match="aug_level"):
        base(x, t, emb, mask, aug_level=extra["aug_level"])


def test_wrong_shapes_raise_shape_errors():
    model = make()
    x, t, emb, mask, _ = inputs(2, 16)
    with pytest.raises(ShapeError, match="x_t"):
        model(x[:, :2], t, emb, mask)
    with pytest.raises(ShapeError, match="x_t"):
        model(torch.randn(2, 3, 15, 16), t, emb, mask)  # not divisible by 2
    with pytest.raises(ShapeError, match="t.shape"):
        model(x, t[:1], emb, mask)
    with pytest.raises(ShapeError, match="text_embeds"):
        model(x, t, emb[..., :-1], mask)
    with pytest.raises(ShapeError, match="text_mask"):
        model(x, t, emb, mask[:, :-1])
    sr = make("tiny-sr")
    _, _, _, _, extra = inputs(2, 16, sr=True)
    with pytest.raises(ShapeError, match="lowres"):
        sr(x, t, emb, mask, lowres=extra["lowres"][:, :, :8], aug_level=extra["aug_level"])


def test_masked_positions_do_not_matter_and_unmasked_do():
    model = make()
    x, t, emb, mask, _ = inputs(2, 16)
    with torch.no_grad():
        ref = model(x, t, emb, mask)
        changed = emb.clone()
        changed[:, -2:] = 1e3 * torch.randn(2, 2, D)  # masked-out positions
        assert torch.allclose(model(x, t, changed, mask), ref, atol=1e-6, rtol=0)
        changed[:, 0] = torch.randn(2, D)  # an attended position (not a shift: layer norm)
        assert (model(x, t, changed, mask) - ref).abs().max() > 1e-4


def test_empty_mask_is_finite_and_equals_no_text():
    model = make()
    x, t, emb, mask, _ = inputs(2, 16)
    with torch.no_grad():
        empty = model(x, t, emb, torch.zeros_like(mask))
        none = model(x, t, None, None)
        cond = model(x, t, emb, mask)
    assert torch.isfinite(empty).all()
    assert torch.allclose(empty, none, atol=1e-6, rtol=0)
    assert (cond - none).abs().max() > 1e-4  # the text does something


def test_batch_independence():
    model = make("tiny-sr")
    x, t, emb, mask, extra = inputs(4, 16, sr=True)
    mask[1] = False  # mix conditional and unconditional samples
    with torch.no_grad():
        full = model(x, t, emb, mask, **extra)
        for i in range(4):
            one = model(
                x[i : i + 1],
                t[i : i + 1],
                emb[i : i + 1],
                mask[i : i + 1],
                **{k: v[i : i + 1] for k, v in extra.items()},
            )
            assert torch.allclose(one, full[i : i + 1], atol=1e-5, rtol=1e-4)
        other = x.clone()
        other[1:] = torch.randn(3, 3, 16, 16)
        assert torch.allclose(model(other, t, emb, mask, **extra)[0], full[0], atol=1e-5)


def test_safetensors_round_trip_is_bit_identical(tmp_path):
    model = make("tiny-sr", seed=3)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded = EfficientUNet(UNetConfig.from_dict(json.loads(model.config.to_json()))).eval()
    loaded.load_state_dict(load_file(str(path)))
    x, t, emb, mask, extra = inputs(2, 16, sr=True)
    with torch.no_grad():
        assert torch.equal(model(x, t, emb, mask, **extra), loaded(x, t, emb, mask, **extra))
    fresh = make("tiny-sr", seed=4)  # different weights really give a different output
    with torch.no_grad():
        assert not torch.equal(model(x, t, emb, mask, **extra), fresh(x, t, emb, mask, **extra))


@pytest.mark.parametrize("name", ["tiny-base", "tiny-sr"])
def test_every_parameter_gets_a_gradient(name):
    sr = name == "tiny-sr"
    model = make(name).train()
    x, t, emb, mask, extra = inputs(3, 16, sr=sr)
    mask[2] = False  # one unconditional sample reaches the null pooled embedding
    model(x, t, emb, mask, **extra).square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []
