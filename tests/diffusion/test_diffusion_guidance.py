"""The denoiser interface, classifier-free guidance and thresholding."""

from __future__ import annotations

import pytest
import torch

from openimagen.diffusion import (
    apply_threshold,
    classifier_free_guidance,
    concat_cond,
    dynamic_threshold,
    dynamic_threshold_x0,
    eps_from_x0,
    get_schedule,
    model_to_denoiser,
    q_sample,
    static_threshold,
    static_threshold_x0,
    v_from_x0_eps,
    x0_from_eps,
)
from openimagen.errors import InvalidArgumentError, InvalidTypeError, ShapeError

SCHEDULE = get_schedule("cosine")


class SpyDenoiser:
    """x0_hat = tanh(x_t) * (1 + t) + cond["scale"] * cond["emb"].mean(-1); records each call."""

    def __init__(self):
        self.calls: list[tuple[torch.Size, torch.Size, object]] = []

    def __call__(self, x_t, t, cond):
        self.calls.append((x_t.shape, t.shape, cond))
        shift = (cond["scale"] * cond["emb"].mean(-1)).view(-1, 1, 1, 1)  # [B, 1, 1, 1]
        return torch.tanh(x_t) * (1 + t.view(-1, 1, 1, 1)) + shift


def _inputs(batch: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x_t = torch.randn(batch, 2, 4, 4, generator=gen)
    t = torch.rand(batch, generator=gen)
    cond = {"emb": torch.randn(batch, 5, generator=gen), "scale": torch.ones(batch), "none": None}
    uncond = {"emb": torch.zeros(batch, 5), "scale": torch.ones(batch), "none": None}
    return x_t, t, cond, uncond


# -- classifier-free guidance --------------------------------------------------------------------
def test_guidance_weight_one_is_exactly_the_conditional_denoiser():
    x_t, t, cond, uncond = _inputs()
    spy = SpyDenoiser()
    guided = classifier_free_guidance(spy, 1.0, uncond)(x_t, t, cond)
    assert torch.equal(guided, SpyDenoiser()(x_t, t, cond))
    assert len(spy.calls) == 1 and spy.calls[0][0][0] == 3  # the uncond half never ran


@pytest.mark.parametrize("w", [0.0, 3.0, 7.5])
def test_guidance_is_one_batched_forward_with_the_right_mix(w):
    x_t, t, cond, uncond = _inputs()
    spy = SpyDenoiser()
    guided = classifier_free_guidance(spy, w, uncond)(x_t, t, cond)
    assert len(spy.calls) == 1
    x_shape, t_shape, both = spy.calls[0]
    assert x_shape == (6, 2, 4, 4) and t_shape == (6,)
    assert (
        torch.equal(both["emb"], torch.cat([cond["emb"], uncond["emb"]])) and both["none"] is None
    )
    ref = SpyDenoiser()
    x0_c, x0_u = ref(x_t, t, cond), ref(x_t, t, uncond)
    torch.testing.assert_close(guided, x0_u + w * (x0_c - x0_u))


def test_guidance_builds_the_doubled_cond_once_per_cond():
    x_t, t, cond, uncond = _inputs()
    other = _inputs(seed=1)[2]
    spy = SpyDenoiser()
    guided = classifier_free_guidance(spy, 4.0, uncond)
    first = [guided(x_t, t, cond) for _ in range(3)]  # a sampler's steps: the same cond
    assert spy.calls[0][2] is spy.calls[1][2] is spy.calls[2][2]  # built once, reused
    switched = guided(x_t, t, other)  # a new cond is never answered from the old one
    assert spy.calls[3][2] is not spy.calls[0][2]
    fresh = classifier_free_guidance(SpyDenoiser(), 4.0, uncond)
    assert all(torch.equal(f, fresh(x_t, t, cond)) for f in first)
    assert torch.equal(switched, fresh(x_t, t, other))


def test_guidance_on_x0_equals_the_papers_eps_form():
    # Ho & Salimans 2021 mix eps predictions; we mix x0 predictions. At fixed x_t they agree.
    gen = torch.Generator().manual_seed(3)
    weights = torch.randn(2, 2, dtype=torch.float64, generator=gen)

    def eps_model(x_t, t, cond):  # a raw eps head
        return torch.sin(x_t @ weights) * cond[0] + t.view(-1, 1)

    x_t = torch.randn(5, 2, dtype=torch.float64, generator=gen)
    t = torch.rand(5, dtype=torch.float64, generator=gen)
    cond, uncond = (torch.full((5, 1), 2.0, dtype=torch.float64),), (torch.zeros(5, 1).double(),)
    w = 4.0
    guided = classifier_free_guidance(model_to_denoiser(eps_model, SCHEDULE, "eps"), w, uncond)
    eps_c, eps_u = eps_model(x_t, t, cond), eps_model(x_t, t, uncond)
    expected = x0_from_eps(x_t, eps_u + w * (eps_c - eps_u), SCHEDULE(t))
    torch.testing.assert_close(guided(x_t, t, cond), expected)


def test_concat_cond_pytrees_and_mismatches():
    a = (torch.ones(2, 3), [None, torch.zeros(2)])
    b = (torch.zeros(2, 3), [None, torch.ones(2)])
    both = concat_cond(a, b)
    assert isinstance(both, tuple) and isinstance(both[1], list) and both[1][0] is None
    assert torch.equal(both[0], torch.cat([torch.ones(2, 3), torch.zeros(2, 3)]))
    assert torch.equal(both[1][1], torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert concat_cond(None, None) is None
    with pytest.raises(InvalidArgumentError, match=r"uncond keys=\['a'\].*\['a', 'b'\]"):
        concat_cond({"a": None, "b": None}, {"a": None})
    with pytest.raises(ShapeError, match=r"uncond.shape=\(2, 4\).*\(2, 3\)"):
        concat_cond(torch.ones(2, 3), torch.ones(2, 4))
    with pytest.raises(InvalidTypeError, match="uncond must be the same structure as cond"):
        concat_cond(torch.ones(2, 3), None)


def test_guidance_weight_validation():
    with pytest.raises(InvalidArgumentError, match=r"guidance_weight=-1.0.*>= 0"):
        classifier_free_guidance(SpyDenoiser(), -1.0, None)
    with pytest.raises(InvalidTypeError, match="guidance_weight must be a float"):
        classifier_free_guidance(SpyDenoiser(), "7", None)


# -- the network -> denoiser adapter -------------------------------------------------------------
@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_model_to_denoiser_recovers_x0_from_a_perfect_head(prediction):
    gen = torch.Generator().manual_seed(4)
    x0 = torch.randn(6, 3, 2, 2, generator=gen, dtype=torch.float64)
    eps = torch.randn(6, 3, 2, 2, generator=gen, dtype=torch.float64)
    t = torch.linspace(0.05, 0.95, 6, dtype=torch.float64)
    x_t = q_sample(x0, SCHEDULE(t), eps)

    def perfect(x, time, cond):  # returns the exact target of its kind
        logsnr = SCHEDULE(time)
        if prediction == "eps":
            return eps_from_x0(x, x0, logsnr)
        return v_from_x0_eps(x0, eps, logsnr) if prediction == "v" else x0

    torch.testing.assert_close(model_to_denoiser(perfect, SCHEDULE, prediction)(x_t, t, None), x0)
    with pytest.raises(InvalidArgumentError, match="prediction='sample'"):
        model_to_denoiser(perfect, SCHEDULE, "sample")


# -- thresholding (Imagen sec. 2.3) --------------------------------------------------------------
def _heavy_tailed(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(8, 3, 8, 8, generator=gen, dtype=torch.float64)
    return torch.tan(torch.pi * (u - 0.5)) * 3.0  # Cauchy, scale 3: values up to ~1e4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_thresholding_never_leaves_unit_interval(seed):
    x0 = _heavy_tailed(seed)
    assert x0.abs().max() > 100  # the input really is far outside
    for out in (
        static_threshold_x0(x0),
        dynamic_threshold_x0(x0, 99.5),
        dynamic_threshold_x0(x0, 50.0),
        dynamic_threshold_x0(x0.float(), 100.0),
    ):
        assert out.abs().max() <= 1.0


def test_dynamic_threshold_known_values_and_identity_inside():
    x0 = torch.tensor([[0.5, 2.0, -4.0, 1.0], [0.1, -0.2, 0.3, 0.9]])
    # sample 0: s = max |x| = 4 at percentile 100 -> clip to [-4, 4] then / 4
    # sample 1: all |x| <= 1, so s = max(1, 0.9) = 1 and it is unchanged
    expected = torch.tensor([[0.125, 0.5, -1.0, 0.25], [0.1, -0.2, 0.3, 0.9]])
    torch.testing.assert_close(dynamic_threshold_x0(x0, 100.0), expected)
    inside = torch.rand(4, 3, 5, 5, generator=torch.Generator().manual_seed(5)) * 2 - 1
    assert torch.equal(dynamic_threshold_x0(inside, 99.5), inside)
    assert torch.equal(static_threshold_x0(inside), inside)


def test_threshold_wrappers():
    x_t, t, cond, _ = _inputs()
    big = lambda x, time, c: 50.0 * x  # noqa: E731
    assert static_threshold(big)(x_t, t, cond).abs().max() <= 1.0
    assert dynamic_threshold(big, 99.0)(x_t, t, cond).abs().max() <= 1.0
    assert torch.equal(
        apply_threshold(big, "dynamic", 97.0)(x_t, t, cond),
        dynamic_threshold_x0(50.0 * x_t, 97.0),
    )
    assert apply_threshold(big, "none") is big
    assert torch.equal(apply_threshold(big, "static")(x_t, t, cond), (50.0 * x_t).clamp(-1, 1))


@pytest.mark.parametrize("percentile", [0.0, -5.0, 100.5, 250.0])
def test_percentile_outside_range_is_rejected(percentile):
    with pytest.raises(InvalidArgumentError) as err:
        dynamic_threshold_x0(torch.zeros(2, 3), percentile)
    assert f"percentile={percentile!r}" in str(err.value) and "(0, 100]" in str(err.value)
    with pytest.raises(InvalidArgumentError, match="percentile"):
        apply_threshold(SpyDenoiser(), "dynamic", percentile)


def test_unknown_threshold_kind():
    with pytest.raises(InvalidArgumentError, match="threshold='clip'.*'none', 'static', 'dynamic'"):
        apply_threshold(SpyDenoiser(), "clip")
