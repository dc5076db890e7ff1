"""train.activation_checkpointing: the same run, resumable either way, the same exported stage."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from train_testutil import (
    make_config,
    one_thread,  # noqa: F401  (autouse fixture)
    write_toml,
)

from openimagen.errors import ConfigError
from openimagen.train import export_stage, load_config, run_training
from openimagen.train.parts import build_parts, build_stage_config

STEPS = 6
# dropout on, so the recomputed forward must replay the same dropout masks
UNET = {"dropout": 0.1}


def config(checkpointing: bool) -> dict:
    return make_config(
        stage={"unet": UNET},
        train={"steps": STEPS, "checkpoint_every": 3, "activation_checkpointing": checkpointing},
    )


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    out = tmp_path_factory.mktemp("plain")
    return run_training(config(False), out)


def test_the_option_defaults_off_and_takes_only_a_bool(tmp_path):
    assert load_config(make_config()).train.activation_checkpointing is False
    bad = write_toml(make_config(train={"activation_checkpointing": 1}), tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="train.activation_checkpointing"):
        load_config(bad)


def test_the_trained_network_is_checkpointed_and_its_ema_copy_is_not():
    cfg = load_config(config(True))
    parts = build_parts(cfg, build_stage_config(cfg), fresh=True)
    levels = [m for m in parts.model.modules() if hasattr(m, "run_checkpointed")]
    assert levels and all(m.activation_checkpointing for m in levels)
    ema_levels = [m for m in parts.ema.modules() if hasattr(m, "run_checkpointed")]
    assert len(ema_levels) == len(levels) and not any(
        m.activation_checkpointing for m in ema_levels
    )


def test_a_checkpointed_run_makes_the_same_steps_and_resumes_either_way(plain, tmp_path):
    checkpointed = run_training(config(True), tmp_path / "ckpt")
    assert checkpointed.losses == pytest.approx(plain.losses, abs=1e-6, rel=0)
    # half with it on, resumed with it off; the other way round; and off throughout (with
    # dropout a resumed run's RNG must be where the uninterrupted run's was)
    for first, then, name in (
        (True, False, "on-off"),
        (False, True, "off-on"),
        (False, False, "off"),
    ):
        out = tmp_path / name
        run_training(config(first), out, max_steps=3)
        rest = run_training(config(then), out, resume="auto")
        assert rest.losses == pytest.approx(plain.losses[3:], abs=1e-6, rel=0), name
    # the exported stage is the same: its config knows nothing of the option
    a, b = tmp_path / "export-plain", tmp_path / "export-ckpt"
    export_stage(plain.output_dir, a)
    export_stage(checkpointed.output_dir, b)
    names = sorted(p.name for p in a.rglob("config.json"))
    assert names and names == sorted(p.name for p in b.rglob("config.json"))
    for path in a.rglob("config.json"):
        other = b / path.relative_to(a)
        assert json.loads(path.read_text()) == json.loads(other.read_text())
    for path in a.rglob("model.safetensors"):
        want, got = load_file(path), load_file(b / path.relative_to(a))
        assert want.keys() == got.keys()
        # Gradients agree to ~1e-7, but AdamW divides by sqrt(v): on a parameter whose gradient
        # is ~0 (a conv bias right before a group norm) rounding noise becomes a step of up to
        # lr either way. So: nearly every element equal, and none further than a few steps.
        diffs = torch.cat([(got[k] - t).abs().flatten() for k, t in want.items()])
        assert float((diffs > 1e-5).float().mean()) < 0.01
        assert float(diffs.max()) <= 3 * 1e-3 * STEPS
