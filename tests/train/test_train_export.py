"""SR training with noise-conditioning augmentation, sample grids, and export into a cascade."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from train_testutil import (
    make_config,
    one_thread,  # noqa: F401  (autouse fixture)
)

from openimagen.cascade import Cascade
from openimagen.errors import ModelDirectoryError
from openimagen.models import get_preset
from openimagen.train import export_stage, run_training

SR_SIZE = get_preset("tiny-sr").image_size
LOW = SR_SIZE // 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A base stage at LOW and an SR stage LOW -> SR_SIZE, two steps each, with grids."""
    root = tmp_path_factory.mktemp("stages")
    log = {"sample_every": 2, "sample_steps": 2, "sample_prompts": ["a red circle", "a box"],
           "sample_seeds": [0, 1]}  # fmt: skip
    steps = {"steps": 2, "checkpoint_every": 2}
    base = make_config(stage={"resolution": LOW, "unet": {"image_size": LOW}}, train=steps, log=log)
    sr = make_config(
        stage={
            "preset": "tiny-sr",
            "resolution": SR_SIZE,
            "lowres_resolution": LOW,
            "unet": {"image_size": SR_SIZE},
        },  # fmt: skip
        train={**steps, "max_aug_level": 0.3},
        log={**log, "sample_aug_level": 0.1},
    )
    return (
        run_training(base, root / "base"),
        run_training(sr, root / "sr"),
    )


def test_sr_training_runs_and_writes_sample_grids(trained):
    base, sr = trained
    for result, size in ((base, LOW), (sr, SR_SIZE)):
        assert len(result.losses) == 2 and all(0 < x < 10 for x in result.losses)
        grid = result.output_dir / "samples" / "step_00000002.png"
        from PIL import Image

        with Image.open(grid) as image:
            # two images side by side with 2-pixel padding
            assert image.size == (2 * size + 6, size + 4)


def test_export_builds_a_cascade_that_loads_with_the_ema_weights(trained, tmp_path, minilm):
    base, sr = trained
    model_dir = tmp_path / "model"
    export_stage(base.output_dir, model_dir)
    export_stage(sr.output_dir, model_dir)
    cascade_json = json.loads((model_dir / "cascade.json").read_text())
    assert [s["path"] for s in cascade_json["stages"]] == [
        f"stage0_base{LOW}",
        f"stage1_sr{SR_SIZE}",
    ]
    assert cascade_json["stages"][1]["sampling"]["noise_aug_level"] == pytest.approx(0.1)
    cascade = Cascade.load(model_dir, text_encoder=minilm, device="cpu")
    ema = load_file(sr.checkpoint / "ema.safetensors")
    for name, tensor in cascade.stages[1].unet.state_dict().items():
        assert torch.equal(tensor, ema["module." + name]), name
    images = cascade.generate(["a red circle"], [0])
    assert images.shape == (1, 3, SR_SIZE, SR_SIZE)

    # exporting the base stage again replaces stage 0 and keeps the SR stage
    export_stage(base.checkpoint, model_dir)
    assert len(json.loads((model_dir / "cascade.json").read_text())["stages"]) == 2


def test_export_refuses_a_stage_that_does_not_chain(trained, tmp_path):
    base, sr = trained
    alone = tmp_path / "sr-alone"
    export_stage(sr.output_dir, alone)  # no cascade there: a bare stage directory
    assert sorted(p.name for p in alone.iterdir()) == [
        "config.json",
        "model.safetensors",
        "training.json",
    ]
    with pytest.raises(ModelDirectoryError):
        export_stage(sr.output_dir, alone)  # not empty, not a cascade
    model_dir = tmp_path / "model"
    export_stage(sr.checkpoint.parent.parent.parent / "base", model_dir)
    cascade_before = (model_dir / "cascade.json").read_bytes()
    tiny = make_config(stage={"preset": "tiny-sr", "resolution": SR_SIZE, "lowres_resolution":
                              LOW // 2, "unet": {"image_size": SR_SIZE}}, train={"steps": 1})  # fmt: skip
    other = run_training(tiny, tmp_path / "sr-other")
    with pytest.raises(ModelDirectoryError, match="expects"):
        export_stage(other.output_dir, model_dir)
    assert (model_dir / "cascade.json").read_bytes() == cascade_before


def test_export_refuses_a_stage_trained_on_another_text_length(trained, tmp_path):
    base, _ = trained
    model_dir = tmp_path / "model"
    export_stage(base.output_dir, model_dir)
    cascade_before = (model_dir / "cascade.json").read_bytes()
    sr = make_config(
        stage={"preset": "tiny-sr", "resolution": SR_SIZE, "lowres_resolution": LOW,
               "unet": {"image_size": SR_SIZE}},
        text={"encoder": "minilm", "max_length": 16},  # the base stage used 32
        train={"steps": 1},
    )  # fmt: skip
    other = run_training(sr, tmp_path / "sr-16")
    with pytest.raises(ModelDirectoryError, match="32 tokens but the stage was trained on 16"):
        export_stage(other.output_dir, model_dir)
    assert (model_dir / "cascade.json").read_bytes() == cascade_before


def test_export_writes_a_model_card_from_the_training_run(trained, tmp_path):
    from openimagen.cli import main
    from openimagen.modelcard import read_model_card

    base, sr = trained
    model_dir = tmp_path / "carded"
    export_stage(base.output_dir, model_dir)
    card = read_model_card(model_dir)
    assert card.startswith("---\nlicense: apache-2.0") and "pipeline_tag: text-to-image" in card
    assert "2 steps of batch 4 (8 images)" in card and "shapes world" in card
    assert "Not evaluated yet" in card
    export_stage(sr.output_dir, model_dir)
    card = read_model_card(model_dir)
    record = json.loads((model_dir / f"stage1_sr{SR_SIZE}" / "training.json").read_text())
    assert record["step"] == 2 and record["images_seen"] == 8
    assert record["config"]["train"]["max_aug_level"] == pytest.approx(0.3)
    assert card.count("2 steps of batch 4") == 2  # one line per stage
    assert f"{LOW} -> {SR_SIZE}" in card and "noise aug 0.1" in card
    assert main(["info", "--model", str(model_dir)]) == 0


def test_train_init_from_a_model_directory_stage_fine_tunes_its_weights(trained, tmp_path):
    from openimagen.errors import ConfigError
    from openimagen.train import load_ema_stage

    base, _ = trained
    model_dir = export_stage(base.output_dir, tmp_path / "model")
    stage_dir = model_dir / f"stage0_base{LOW}"
    exported = Cascade.load(model_dir, device="cpu").stages[0].unet.state_dict()
    # a tiny learning rate: one step later the weights are still the exported ones
    config = make_config(
        stage={"resolution": LOW, "unet": {"image_size": LOW}},
        optim={"lr": 1e-12, "warmup_steps": 0},
        train={"steps": 1, "checkpoint_every": 1, "init_from": str(stage_dir)},
    )
    tuned = run_training(config, tmp_path / "tuned")
    stage, _ = load_ema_stage(tuned.checkpoint)
    for name, tensor in stage.unet.state_dict().items():
        assert torch.allclose(tensor, exported[name], atol=1e-6), name
    # a fresh run (another seed, so another random init) is far from them
    fresh = run_training({**config, "train": {**config["train"], "init_from": "", "seed": 123}},
                         tmp_path / "fresh")  # fmt: skip
    far = load_ema_stage(fresh.checkpoint)[0].unet.state_dict()
    assert any(not torch.allclose(far[k], exported[k], atol=1e-3) for k in exported)
    other = make_config(
        stage={"resolution": LOW, "unet": {"image_size": LOW, "base_channels": 16}},
        train={"steps": 1, "init_from": str(stage_dir)},
    )
    with pytest.raises(ConfigError, match=r"train.init_from=.*base_channels"):
        run_training(other, tmp_path / "other")


def test_train_init_from_may_add_a_text_refiner_to_a_stage_trained_without_one(trained, tmp_path):
    from openimagen.errors import ConfigError
    from openimagen.train import load_ema_stage

    base, _ = trained
    stage_dir = export_stage(base.output_dir, tmp_path / "model") / f"stage0_base{LOW}"
    exported = Cascade.load(stage_dir.parent, device="cpu").stages[0].unet.state_dict()
    unet = {"image_size": LOW, "text_refiner_layers": 1}
    config = make_config(
        stage={"resolution": LOW, "unet": unet},
        optim={"lr": 1e-12, "warmup_steps": 0},
        train={"steps": 1, "checkpoint_every": 1, "init_from": str(stage_dir)},
    )
    tuned = load_ema_stage(run_training(config, tmp_path / "tuned").checkpoint)[0].unet
    assert tuned.config.text_refiner_layers == 1
    weights = tuned.state_dict()
    for name, tensor in exported.items():  # every weight the stage had is carried over
        assert torch.allclose(weights[name], tensor, atol=1e-6), name
    # the refiner is new: its output projections start at zero (the identity), and one step
    # of lr 1e-12 moves them by about that
    assert weights["text_refiner.layers.0.linear2.weight"].abs().max() < 1e-9
    # a refiner is only added, never dropped or resized: that is a different U-Net
    refined_dir = export_stage(tmp_path / "tuned", tmp_path / "refined") / f"stage0_base{LOW}"
    for layers in (0, 2):
        other = make_config(
            stage={"resolution": LOW, "unet": {"image_size": LOW, "text_refiner_layers": layers}},
            train={"steps": 1, "init_from": str(refined_dir)},
        )
        with pytest.raises(ConfigError, match=r"train.init_from=.*text_refiner_layers"):
            run_training(other, tmp_path / f"other{layers}")
