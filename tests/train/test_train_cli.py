"""``openimagen train`` and ``openimagen export`` from the command line."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file
from train_testutil import (
    make_config,
    one_thread,  # noqa: F401  (autouse fixture)
    write_toml,
)

from cli_testutil import run
from openimagen.cascade import Cascade, read_cascade_config


def test_train_dry_run_prints_the_resolved_config_and_trains_nothing(tmp_path, capsys):
    config = write_toml(make_config(train={"steps": 7}), tmp_path / "c.toml")
    code, out, _ = run(
        ["train", str(config), "--output", str(tmp_path / "run"), "--dry-run"], capsys
    )
    assert code == 0
    resolved = json.loads(out)
    assert resolved["config"]["train"]["steps"] == 7
    assert resolved["config"]["optim"]["grad_clip"] == 1.0  # a default, filled in
    assert resolved["stage_config"]["unet"]["base_channels"] == 8
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_train_bad_key_is_one_line_naming_the_key(tmp_path, capsys):
    config = write_toml(make_config(train={"batch_sise": 4}), tmp_path / "c.toml")
    code, out, err = run(["train", str(config), "--output", str(tmp_path / "run")], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "batch_sise" in err and err.startswith("openimagen train: error:")
    assert not (tmp_path / "run").exists()


def test_train_then_export_fp16_gives_a_loadable_cascade(tmp_path, capsys, minilm):
    config = write_toml(make_config(train={"steps": 2, "checkpoint_every": 2}), tmp_path / "c.toml")
    run_dir = tmp_path / "run"
    code, out, _ = run(["train", str(config), "--output", str(run_dir)], capsys)
    assert code == 0 and "step 2" in out

    model = tmp_path / "model"
    code, out, _ = run(
        ["export", str(run_dir), str(model), "--fp16", "--sampler", "dpmpp_2m", "--steps", "3"],
        capsys,
    )
    assert code == 0 and out.strip() == str(model)
    entry = read_cascade_config(model).stages[0]
    assert entry.sampling.sampler == "dpmpp_2m" and entry.sampling.steps == 3
    weights = load_file(model / entry.path / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float16}
    cascade = Cascade.load(model)
    images = cascade.generate(["a red circle"], [0])
    assert images.shape == (1, 3, 16, 16) and images.abs().max() <= 1

    # an SR stage exported without overrides keeps the aug level its run sampled at
    sr_config = make_config(
        stage={"preset": "tiny-sr", "resolution": 32, "lowres_resolution": 16,
               "unet": {"image_size": 32}},
        train={"steps": 1, "checkpoint_every": 1},
        log={"sample_aug_level": 0.25},
    )  # fmt: skip
    sr_run = tmp_path / "sr"
    assert run(["train", str(write_toml(sr_config, tmp_path / "sr.toml")), "--output",
                str(sr_run)], capsys)[0] == 0  # fmt: skip
    code, _, _ = run(["export", str(sr_run), str(model)], capsys)
    assert code == 0
    assert read_cascade_config(model).stages[1].sampling.noise_aug_level == 0.25

    # a second export over a directory that is not a model directory is refused, untouched
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    code, _, err = run(["export", str(run_dir), str(other)], capsys)
    assert code == 2 and err.count("\n") == 1 and "cascade.json" in err
    assert sorted(p.name for p in other.iterdir()) == ["keep.txt"]


def test_resuming_a_finished_run_names_its_checkpoint(tmp_path, capsys):
    config = write_toml(make_config(train={"steps": 2, "checkpoint_every": 2}), tmp_path / "c.toml")
    run_dir = tmp_path / "run"
    code, out, _ = run(["train", str(config), "--output", str(run_dir)], capsys)
    assert code == 0
    checkpoint = run_dir / "checkpoints" / "step_00000002"
    assert out.strip() == f"trained to step 2; checkpoint: {checkpoint}"
    code, out, _ = run(["train", str(config), "--output", str(run_dir), "--resume", "auto"], capsys)
    assert code == 0 and "None" not in out
    assert out.strip() == f"already at step 2 of 2, nothing to train; checkpoint: {checkpoint}"
