"""Cascade.generate (cascade/pipeline.py, cascade/stage.py): determinism, stages, checks."""

from __future__ import annotations

import pytest
import torch

from cascade_testutil import FAST, poisoned
from openimagen.cascade import Cascade
from openimagen.errors import InvalidArgumentError


def test_output_shape_and_range(cascade):
    images = cascade.generate(["a red circle", "two blue squares"], seeds=[1, 2])
    assert images.shape == (2, 3, 32, 32)
    assert images.min() >= -1 and images.max() <= 1
    assert not torch.equal(images[0], images[1])


def test_save_load_gives_bit_identical_images(cascade, saved, minilm):
    loaded = Cascade.load(saved)
    assert loaded.text_encoder.name == minilm.name
    prompts, seeds = ["a green triangle above a red circle"], [7]
    assert torch.equal(cascade.generate(prompts, seeds), loaded.generate(prompts, seeds))
    assert loaded.sampling == cascade.sampling


def test_seed_i_gives_the_same_image_alone_or_in_a_batch(cascade):
    prompts = ["a red circle", "a blue square", "a yellow triangle"]
    batch = cascade.generate(prompts, seeds=[10, 11, 12])
    for i, (prompt, seed) in enumerate(zip(prompts, [10, 11, 12], strict=True)):
        alone = cascade.generate([prompt], seeds=[seed])
        torch.testing.assert_close(alone[0], batch[i], rtol=0, atol=1e-5)


def test_same_seed_same_image_and_other_seed_differs(cascade):
    a = cascade.generate(["a red circle"], seeds=[3])
    b = cascade.generate(["a red circle"], seeds=[3])
    c = cascade.generate(["a red circle"], seeds=[4])
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 1e-3


def test_num_stages_stops_after_the_base(cascade):
    assert cascade.generate(["a red circle"], seeds=[0], num_stages=1).shape == (1, 3, 16, 16)


def test_bf16_precision_runs_the_unets_under_autocast_and_stays_close(cascade):
    seen = []
    hooks = [
        s.unet.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
        for s in cascade.stages
    ]
    try:
        settings = [FAST.replace(precision="bf16")] * 2
        half = cascade.generate(["a red circle", "a blue square"], [0, 1], sampling=settings)
    finally:
        for h in hooks:
            h.remove()
    full = cascade.generate(["a red circle", "a blue square"], [0, 1], sampling=[FAST] * 2)
    assert set(seen) == {torch.bfloat16} and len(seen) == 2 * 3  # both stages, every step
    assert half.dtype == torch.float32 and half.shape == full.shape
    assert not torch.equal(half, full)  # bf16 rounding changes the draw a little...
    assert (half - full).abs().mean() < 0.05  # ...but not the image


def test_progress_reports_every_step_in_order(cascade):
    seen = []
    cascade.generate(
        ["a red circle"], seeds=[0], progress=lambda done, total: seen.append((done, total))
    )
    total = sum(s.steps for s in cascade.sampling)
    assert seen == [(i, total) for i in range(1, total + 1)]


def test_text_is_encoded_once_per_distinct_prompt(cascade, monkeypatch):
    calls = []
    original = cascade.text_encoder.encode

    def spy(texts):
        calls.append(list(texts))
        return original(texts)

    monkeypatch.setattr(cascade.text_encoder, "encode", spy)
    cascade.generate(["a red circle"] * 3 + ["a blue square"], seeds=[0, 1, 2, 3], num_stages=1)
    assert calls == [["a red circle", "a blue square"]]


@pytest.mark.parametrize(
    ("prompts", "seeds", "match"),
    [([], [], "prompts"), (["  "], [0], "prompt"), (["a", "b"], [0], "seeds")],
)
def test_bad_generate_arguments(cascade, prompts, seeds, match):
    with pytest.raises(InvalidArgumentError, match=match):
        cascade.generate(prompts, seeds)


# -- inputs the text encoder or a PNG cannot take, and outputs that are not numbers ----------
@pytest.mark.parametrize(
    ("prompt", "shown"),
    [("a \udcff circle", r"\udcff"), ("a red\x00circle", r"\x00"), ("a \x1b[2J circle", r"\x1b")],
    ids=["lone surrogate", "NUL", "escape"],
)
def test_prompts_that_are_not_clean_text_are_refused_before_sampling(cascade, prompt, shown):
    with pytest.raises(InvalidArgumentError, match="prompt") as info:
        cascade.generate([prompt], seeds=[0])
    assert shown in str(info.value)


def test_tabs_and_newlines_are_ordinary_prompt_text(cascade):
    assert cascade.generate(["a red circle\n\tabove a square"], seeds=[0], num_stages=1).shape[0]


@pytest.mark.parametrize("num_stages", [0, 3, 5])
def test_num_stages_outside_the_model_is_refused(cascade, num_stages):
    with pytest.raises(InvalidArgumentError, match=f"num_stages={num_stages} .*from 1 to 2"):
        cascade.generate(["a red circle"], seeds=[0], num_stages=num_stages)


@pytest.mark.parametrize(
    ("stage", "value"), [(0, float("nan")), (1, float("nan")), (1, float("inf"))]
)
def test_non_finite_output_is_an_error_naming_the_stage(minilm, stage, value):
    from openimagen.errors import OpenImagenError

    broken = poisoned(minilm, stage, value)
    with pytest.raises(OpenImagenError, match=f"stage {stage} .*not finite") as info:
        broken.generate(["a red circle", "a blue square"], seeds=[3, 4])
    assert "seeds [3, 4]" in str(info.value)
