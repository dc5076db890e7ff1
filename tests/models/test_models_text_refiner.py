"""The text refiner: identity when new, reads token positions once trained, ignores padding."""

from __future__ import annotations

import pytest
import torch

from openimagen.errors import ConfigError
from openimagen.models import EfficientUNet, get_preset

D = 24


def make(layers: int, seed: int = 0) -> EfficientUNet:
    torch.manual_seed(seed)
    return EfficientUNet(get_preset("tiny-base", text_embed_dim=D, text_refiner_layers=layers))


def trained_like(model: EfficientUNet) -> EfficientUNet:
    """Give the zero-initialised output projections weights, as training would."""
    g = torch.Generator().manual_seed(7)
    for layer in model.text_refiner.layers:
        for proj in (layer.self_attn.out_proj, layer.linear2):
            proj.weight.data = torch.randn(proj.weight.shape, generator=g) * 0.3
            proj.bias.data = torch.randn(proj.bias.shape, generator=g) * 0.3
    return model.eval()


def batch(b: int = 2, seq: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x, t = torch.randn(b, 3, 16, 16, generator=g), torch.rand(b, generator=g)
    emb = torch.randn(b, seq, D, generator=g)
    mask = torch.ones(b, seq, dtype=torch.bool)
    return x, t, emb, mask


def test_a_new_refiner_is_exactly_the_identity_on_a_trained_unet():
    plain, refined = make(0), make(2, seed=5)
    missing, unexpected = refined.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("text_refiner.") for k in missing)
    x, t, emb, mask = batch()
    mask[1, 3:] = False
    with torch.no_grad():
        assert torch.equal(plain.eval()(x, t, emb, mask), refined.eval()(x, t, emb, mask))


def test_with_a_refiner_the_order_of_the_tokens_matters_without_one_it_does_not():
    x, t, emb, mask = batch()
    reordered = emb[:, [1, 0, 2, 3, 4, 5]]  # swap the first two tokens
    plain, refined = make(0).eval(), trained_like(make(2))
    with torch.no_grad():
        # cross-attention alone reads a set of tokens: the order cannot change the output
        assert torch.allclose(plain(x, t, emb, mask), plain(x, t, reordered, mask), atol=1e-5)
        change = (refined(x, t, emb, mask) - refined(x, t, reordered, mask)).abs().max()
    assert change > 1e-3


def test_padding_is_ignored_and_a_dropped_caption_stays_finite():
    model = trained_like(make(1))
    x, t, emb, mask = batch(seq=4)
    padded = torch.cat([emb, torch.randn(2, 3, D) * 50], dim=1)  # garbage under the padding
    padded_mask = torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        short, long = model(x, t, emb, mask), model(x, t, padded, padded_mask)
    assert torch.allclose(short, long, atol=1e-5)
    model.train()
    dropped = torch.zeros_like(padded_mask)
    dropped[0] = padded_mask[0]  # the second caption dropped (classifier-free guidance)
    out = model(x, t, padded, dropped)
    out.square().mean().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.text_refiner.layers[0].linear2.weight.grad.abs().sum() > 0  # it learns


def test_a_negative_number_of_refiner_layers_is_refused():
    with pytest.raises(ConfigError, match="text_refiner_layers=-1"):
        get_preset("tiny-base", text_embed_dim=D, text_refiner_layers=-1)
