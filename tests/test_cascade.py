"""Stage / Cascade: sampling determinism, model-directory save/load and its validation."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from openimagen.cascade import (
    Cascade,
    SamplingConfig,
    Stage,
    StageConfig,
)
from openimagen.errors import InvalidArgumentError, ModelDirectoryError
from openimagen.models.presets import get_preset

FAST = SamplingConfig(sampler="ddim", steps=3, guidance_weight=3.0, threshold="dynamic")


def tiny_cascade(encoder, *, base_res: int = 16, sr_res: int = 32, seed: int = 0) -> Cascade:
    """A random two-stage cascade small enough to sample in well under a second."""
    torch.manual_seed(seed)
    base = StageConfig(
        unet=get_preset("tiny-base", image_size=base_res, text_embed_dim=encoder.dim),
        resolution=base_res,
    )
    sr = StageConfig(
        unet=get_preset("tiny-sr", image_size=sr_res, text_embed_dim=encoder.dim),
        resolution=sr_res,
        lowres_resolution=base_res,
    )
    sr_sampling = FAST.replace(sampler="dpmpp_2m", noise_aug_level=0.2)
    return Cascade(encoder, [Stage(base), Stage(sr)], [FAST, sr_sampling], model_id="tiny")


@pytest.fixture(scope="module")
def cascade(minilm):
    return tiny_cascade(minilm)


@pytest.fixture(scope="module")
def saved(cascade, tmp_path_factory):
    return cascade.save(tmp_path_factory.mktemp("models") / "tiny")


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


# -- model directory validation -------------------------------------------------------------
@pytest.fixture()
def copy_of(saved, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(saved, target)
    return target


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_model_directory_is_plain_files(saved):
    names = sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file())
    assert names == [
        "cascade.json",
        "stage0_base16/config.json",
        "stage0_base16/model.safetensors",
        "stage1_sr32/config.json",
        "stage1_sr32/model.safetensors",
    ]
    meta = json.loads((saved / "cascade.json").read_text())
    assert meta["format"] == "openimagen-cascade" and meta["version"] == 1
    assert meta["stages"][1]["sampling"]["noise_aug_level"] == 0.2


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelDirectoryError, match="does not exist"):
        Cascade.load(tmp_path / "nope")


def test_directory_without_cascade_json(tmp_path):
    with pytest.raises(ModelDirectoryError, match="cascade.json is missing"):
        Cascade.load(tmp_path)


def test_malformed_cascade_json(copy_of):
    (copy_of / "cascade.json").write_text("{not json")
    with pytest.raises(ModelDirectoryError, match="invalid JSON at line 1"):
        Cascade.load(copy_of)


def test_foreign_format(copy_of):
    _edit_json(copy_of / "cascade.json", lambda d: d.update(format="something-else"))
    with pytest.raises(ModelDirectoryError, match="not an openimagen model directory"):
        Cascade.load(copy_of)


def test_newer_version_is_refused(copy_of):
    _edit_json(copy_of / "cascade.json", lambda d: d.update(version=99))
    with pytest.raises(ModelDirectoryError, match="newer openimagen"):
        Cascade.load(copy_of)


def test_unknown_key_is_named(copy_of):
    _edit_json(copy_of / "cascade.json", lambda d: d.update(colour="red"))
    with pytest.raises(ModelDirectoryError, match="unknown key 'colour'"):
        Cascade.load(copy_of)


def test_missing_weights(copy_of):
    (copy_of / "stage1_sr32" / "model.safetensors").unlink()
    with pytest.raises(ModelDirectoryError, match="model.safetensors is missing"):
        Cascade.load(copy_of)


def test_corrupt_weights(copy_of):
    (copy_of / "stage0_base16" / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ModelDirectoryError, match="not a readable safetensors file"):
        Cascade.load(copy_of)


def test_weights_that_do_not_match_the_config(copy_of):
    _edit_json(
        copy_of / "stage0_base16" / "config.json",
        lambda d: d["unet"].update(base_channels=d["unet"]["base_channels"] * 2),
    )
    with pytest.raises(ModelDirectoryError, match="has shape|missing tensors"):
        Cascade.load(copy_of)


def test_wrong_stage_resolutions(copy_of):
    _edit_json(copy_of / "stage1_sr32" / "config.json", lambda d: d.update(lowres_resolution=8))
    with pytest.raises(
        ModelDirectoryError, match="stage 1 expects 8x8 input but stage 0 makes 16x16"
    ):
        Cascade.load(copy_of)


def test_unknown_text_encoder(copy_of):
    _edit_json(copy_of / "cascade.json", lambda d: d.update(text_encoder="/no/such/encoder"))
    with pytest.raises(Exception, match="/no/such/encoder") as info:
        Cascade.load(copy_of)
    assert isinstance(info.value, (ModelDirectoryError, InvalidArgumentError))


def test_text_width_mismatch(copy_of):
    class Narrow:
        name, dim, max_length, cache_id = "narrow", 8, 16, "narrow"

    with pytest.raises(ModelDirectoryError, match="width 384, but the text encoder gives 8"):
        Cascade.load(copy_of, text_encoder=Narrow())


def test_save_refuses_to_overwrite_and_failed_save_leaves_nothing(
    cascade, saved, tmp_path, monkeypatch
):
    with pytest.raises(ModelDirectoryError, match="already exists"):
        cascade.save(saved)
    before = sorted(p.name for p in saved.parent.iterdir())

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("openimagen.cascade.atomic_save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        cascade.save(tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".new")] == []
    with pytest.raises(OSError, match="disk full"):
        cascade.save(saved, overwrite=True)
    assert sorted(p.name for p in saved.parent.iterdir()) == before
    assert Cascade.load(saved).model_id == "tiny"


def test_fp16_weights_load_back_close(cascade, tmp_path):
    path = cascade.save(tmp_path / "half", dtype=torch.float16)
    loaded = Cascade.load(path)
    for a, b in zip(cascade.stages, loaded.stages, strict=True):
        for (name, p), q in zip(
            a.unet.state_dict().items(), b.unet.state_dict().values(), strict=True
        ):
            assert q.dtype == p.dtype, name
            torch.testing.assert_close(q, p.half().float(), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("steps", 0), ("guidance_weight", -1.0), ("dynamic_threshold_percentile", 0.0),
     ("eta", 1.5), ("eta", -0.1), ("noise_aug_level", 1.5), ("precision", "fp16")],
)  # fmt: skip
def test_bad_sampling_settings_name_the_field(field, value):
    with pytest.raises(InvalidArgumentError, match=field):
        FAST.replace(**{field: value})


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


def _poisoned(minilm, stage: int, value: float) -> Cascade:
    from test_cascade import tiny_cascade

    broken = tiny_cascade(minilm)
    first = next(broken.stages[stage].unet.parameters())
    with torch.no_grad():
        first.view(-1)[0] = value
    return broken


@pytest.mark.parametrize(
    ("stage", "value"), [(0, float("nan")), (1, float("nan")), (1, float("inf"))]
)
def test_non_finite_output_is_an_error_naming_the_stage(minilm, stage, value):
    from openimagen.errors import OpenImagenError

    broken = _poisoned(minilm, stage, value)
    with pytest.raises(OpenImagenError, match=f"stage {stage} .*not finite") as info:
        broken.generate(["a red circle", "a blue square"], seeds=[3, 4])
    assert "seeds [3, 4]" in str(info.value)


def test_a_model_directory_with_nan_weights_is_refused_at_load(minilm, tmp_path):
    saved = _poisoned(minilm, 1, float("nan")).save(tmp_path / "nan")
    with pytest.raises(ModelDirectoryError, match="stage1_sr32.*not finite"):
        Cascade.load(saved)
