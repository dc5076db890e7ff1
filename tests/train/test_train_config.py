"""Bad configs fail before training starts and name the key; bad data is one line;
grad accumulation; NaN stop."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from train_testutil import (
    make_config,
    one_thread,  # noqa: F401  (autouse fixture)
    write_toml,
)

from openimagen.errors import ConfigError, OpenImagenError
from openimagen.train import TrainingDivergedError, load_config, run_training
from openimagen.train.checkpoint import list_checkpoints


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train": {"batch_sise": 4}}, "unknown key 'batch_sise'"),
        ({"optim": {"lr": "fast"}}, "optim.lr: expected a number"),
        ({"train": {"steps": 1.5}}, "train.steps: expected an integer"),
        ({"data": {"source": "folder"}}, "data.path: required"),
        ({"data": {"source": "parquet"}}, "data.source"),
        ({"train": {"batch_size": 6, "grad_accum": 4}}, "train.batch_size=6"),
        ({"stage": {"resolution": 32, "lowres_resolution": 64}}, "stage.lowres_resolution=64"),
        ({"data": {"image_size": 8}}, "data.image_size=8"),
        ({"log": {"sample_seeds": [1]}}, "log.sample_seeds"),
    ],
)
def test_config_errors_name_the_key(tmp_path, change, message):
    path = write_toml(make_config(**change), tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        load_config(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": {"source": "folder", "path": "no/such/dir"}}, "data.path="),
        ({"data": {"source": "jsonl", "path": "missing.jsonl"}}, "data.path="),
        ({"data": {"source": "webdataset", "path": "shards/*.tar"}}, "data.path="),
        ({"stage": {"resolution": 32}}, "stage.resolution=32"),
        ({"stage": {"lowres_resolution": 8}}, "stage.lowres_resolution=8"),
        ({"stage": {"preset": "no-such-preset"}}, "stage.preset"),
        ({"stage": {"unet": {"no_such_field": 1}}}, "no_such_field"),
        ({"stage": {"unet": {"text_embed_dim": 32}}}, "stage.unet.text_embed_dim=32"),
    ],
)
def test_bad_stage_or_data_fails_before_training_and_writes_nothing(tmp_path, change, message):
    out = tmp_path / "out"
    path = write_toml(make_config(**change), tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        run_training(path, out)
    assert not out.exists()


def test_dry_run_resolves_without_training(tmp_path):
    result = run_training(make_config(), tmp_path / "out", dry_run=True)
    assert result.step == 0 and result.losses == []
    assert result.stage_config.resolution == 16
    assert result.stage_config.unet.text_embed_dim == 384  # MiniLM's width
    assert not (tmp_path / "out").exists()


def test_gradient_accumulation_and_loader_workers_give_the_same_steps(tmp_path):
    base = {"steps": 3, "batch_size": 8, "checkpoint_every": 10}
    plain = run_training(make_config(train=base), tmp_path / "a")
    accumulated = run_training(
        make_config(train={**base, "grad_accum": 4}, data={"num_workers": 2}), tmp_path / "b"
    )
    assert accumulated.losses == pytest.approx(plain.losses, rel=1e-5)


def test_nan_loss_stops_with_a_clear_error_before_the_update(tmp_path, monkeypatch):
    import openimagen.train.step as step

    real = step.diffusion_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 6 else loss

    monkeypatch.setattr(step, "diffusion_loss", poisoned)
    out = tmp_path / "out"
    with pytest.raises(TrainingDivergedError, match="loss is nan at step 6"):
        run_training(make_config(), out)
    # the checkpoint of step 4 is intact and resumable
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step_00000004"]


def test_adafactor_with_bf16_autocast_resumes_exactly(tmp_path):
    # Adafactor's state (factored second moments, a tensor step) round-trips through
    # safetensors + JSON; bf16 autocast runs on the CPU too.
    config = make_config(
        optim={"name": "adafactor", "lr": 1e-2},
        train={"steps": 6, "mixed_precision": "bf16", "checkpoint_every": 3},
    )
    whole = run_training(config, tmp_path / "whole")
    run_training(config, tmp_path / "split", max_steps=3)
    rest = run_training(config, tmp_path / "split", resume="auto")
    assert rest.losses == pytest.approx(whole.losses[3:], abs=1e-6, rel=0)
    # and autocast really ran: the same run in fp32 gives (slightly) different losses
    fp32 = make_config(optim=config["optim"], train={**config["train"], "mixed_precision": "no"})
    plain = run_training(fp32, tmp_path / "fp32")
    assert plain.losses == pytest.approx(whole.losses, rel=0.05)
    assert plain.losses != pytest.approx(whole.losses, abs=1e-6, rel=0)


def test_device_is_checked_before_training(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="train.device"):
        run_training(make_config(train={"device": "gpu"}), tmp_path / "a")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match='train.device="cuda": no CUDA device'):
        run_training(make_config(train={"device": "cuda"}), tmp_path / "b")
    assert not (tmp_path / "b" / "checkpoints").exists()


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[2] / "configs").glob("*.toml")), ids=lambda p: p.name
)
def test_shipped_configs_are_valid(path):
    from openimagen.train import build_stage_config

    config = load_config(path)
    stage = build_stage_config(config)  # preset + overrides + resolution checks
    assert stage.resolution == config.stage.resolution
    assert stage.unet.text_embed_dim == 384  # the bundled MiniLM's width


@pytest.mark.parametrize("workers", [0, 1])
def test_an_unreadable_image_is_one_line_with_or_without_loader_workers(tmp_path, workers):
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(4):
        (folder / f"{i}.txt").write_text("a red square")
        (folder / f"{i}.png").write_bytes(b"not a png at all")
    config = make_config(data={"source": "folder", "path": str(folder), "num_workers": workers})
    with pytest.raises(OpenImagenError) as info:
        run_training(config, tmp_path / "run")
    message = str(info.value)
    assert "a readable image file" in message
    assert "\n" not in message and "Traceback" not in message


def test_train_lr_factor_warms_up_holds_then_decays_to_zero():
    from openimagen.train.config import TrainConfig
    from openimagen.train.parts import lr_factor

    base = make_config(optim={"warmup_steps": 10}, train={"steps": 100})
    constant = TrainConfig.from_dict(base)
    assert lr_factor(constant, 0) == pytest.approx(0.1) and lr_factor(constant, 9) == 1.0
    assert lr_factor(constant, 99) == 1.0
    cooled = TrainConfig.from_dict(make_config(optim={"warmup_steps": 10, "decay_steps": 40},
                                               train={"steps": 100}))  # fmt: skip
    assert lr_factor(cooled, 59) == 1.0 and lr_factor(cooled, 60) == 1.0
    assert lr_factor(cooled, 80) == pytest.approx(0.5) and lr_factor(cooled, 100) == 0.0
    with pytest.raises(ConfigError, match=r"optim.decay_steps=200 is more than train.steps=100"):
        TrainConfig.from_dict(make_config(optim={"decay_steps": 200}, train={"steps": 100}))
