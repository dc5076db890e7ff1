"""Fine-tuning an imported DeepFloyd IF stage with ``openimagen train`` and exporting it back.

The config names the imported stage as its starting weights (``train.init_from``) and takes
its network and schedule as they are (``stage.preset = "init_from"``); the text encoder is
the model directory's T5 with IF's conditioning. The loss of one micro-batch is checked
against the epsilon-prediction loss written out here on diffusers' tables.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from cli_testutil import run
from if_testutil import if_train_config as if_config
from openimagen.cascade import read_stage_config
from openimagen.errors import ConfigError


def config_toml(model, stage: str, resolution: int, lowres: int | None) -> str:
    """What a user writes to fine-tune stage ``stage`` of the imported model ``model``."""
    lowres_line = f"lowres_resolution = {lowres}" if lowres else ""
    return f"""
[stage]
preset = "init_from"          # the imported stage's network and schedule, as they are
resolution = {resolution}
{lowres_line}

[text]
encoder = "{model / 'text_encoder'}"
max_length = 77
conditioning = "deepfloyd-if"

[data]
source = "shapes"
seed = 3

[optim]
name = "adamw"
lr = 1e-4
warmup_steps = 1
weight_decay = 0.0

[train]
init_from = "{model / stage}"
steps = 2
batch_size = 2
device = "cpu"
seed = 7
ema_decay = 0.5
checkpoint_every = 2

[log]
every = 1
progress = false
tensorboard = false
sample_every = 0
"""


@pytest.fixture
def model(if_checkpoints, tmp_path):
    return shutil.copytree(if_checkpoints[2], tmp_path / "model")


@pytest.mark.parametrize(("stage", "resolution", "lowres"),
                         [("stage0_base16", 16, None), ("stage1_sr32", 32, 16)])  # fmt: skip
def test_train_fine_tunes_an_imported_stage_and_exports_it_back(if_checkpoints, model, tmp_path,
                                                                capsys, stage, resolution,
                                                                lowres):  # fmt: skip
    imported = load_file(model / stage / "model.safetensors")
    config = tmp_path / "ft.toml"
    config.write_text(config_toml(model, stage, resolution, lowres), encoding="utf-8")
    code, _, err = run(["train", str(config), "--output", str(tmp_path / "run")], capsys)
    assert code == 0, err
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text()
               .splitlines() if "loss" in line]  # fmt: skip
    assert len(metrics) == 2 and all(0 < m["loss"] < 10 for m in metrics)
    code, _, err = run(["export", str(tmp_path / "run"), str(model)], capsys)
    assert code == 0, err
    tuned = load_file(model / stage / "model.safetensors")
    diffs = [(tuned[k].float() - v.float()).abs().max().item() for k, v in imported.items()]
    # started from the imported weights (a random init would be far off) and moved
    assert 0 < max(diffs) < 0.05
    # still the same diffusers stage, still under the upstream licence, IF's sampling kept
    assert read_stage_config(model / stage) == read_stage_config(if_checkpoints[2] / stage)
    assert (model / stage / "upstream" / "LICENSE").is_file()
    cascade = json.loads((model / "cascade.json").read_text())
    weights = [e["sampling"]["guidance_weight"] for e in cascade["stages"]]
    assert weights == [7.0, 4.0]
    code, _, err = run(["generate", "a red circle", "--model", str(model), "--steps", "2",
                        "--out", str(tmp_path / "a.png"), "--quiet"], capsys)  # fmt: skip
    assert code == 0, err


def test_loss_is_ifs_epsilon_loss_with_the_empty_prompt_for_dropped_captions(model):
    """micro_batch_loss on an imported stage I: integer timesteps, eps MSE on the prediction
    channels, and a dropped caption (text_dropout 1) trained on the empty prompt's encoding."""
    from diffusers import DDPMScheduler

    from openimagen.train import build_stage_config
    from openimagen.train.config import load_config
    from openimagen.train.step import TextEmbedder, micro_batch_loss, sample_generators

    config = load_config(if_config(model, text_dropout=1.0))
    stage = build_stage_config(config)
    from openimagen.cascade import load_stage_weights

    net = load_stage_weights(stage, model / "stage0_base16").unet
    embed = TextEmbedder(config, torch.device("cpu"))
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    emb, mask = embed(["a red circle", "two blue squares"])
    null = embed([""])
    seen = []
    net.register_forward_pre_hook(lambda m, args: seen.append(args[1].clone()))
    losses = micro_batch_loss(net, stage, config, images, emb, mask,
                              sample_generators(7, 0, 2), null_text=null)  # fmt: skip
    # the same draws by hand (stream-0 generators: u, then the noise), on diffusers' tables
    gens = sample_generators(7, 0, 2)
    u = torch.stack([torch.rand(3, generator=g) for g in gens])
    k = (u[:, 0].double() * 1000).floor().long()
    assert torch.equal(seen[0], k.double())  # the network was fed integer timesteps
    noise = torch.stack([torch.randn(3, 16, 16, generator=g) for g in gens])
    reference = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    x_t = reference.add_noise(images, noise, k)
    with torch.no_grad():
        eps = net.unet(x_t, k, encoder_hidden_states=null[0].expand(2, -1, -1)).sample[:, :3]
    expected = ((eps - noise) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(losses.detach(), expected, rtol=1e-4, atol=1e-6)


def test_init_from_preset_needs_a_stage_of_the_given_size(model):
    from openimagen.train import build_stage_config
    from openimagen.train.config import load_config

    with pytest.raises(ConfigError, match="set \\[stage\\] to its sizes"):
        build_stage_config(load_config(if_config(model, resolution=32)))
    masked = if_config(model)
    masked["text"]["conditioning"] = "masked"
    with pytest.raises(ConfigError, match='set text.conditioning = "deepfloyd-if"'):
        build_stage_config(load_config(masked))
    bad = if_config(model)
    bad["train"]["init_from"] = ""
    with pytest.raises(ConfigError, match="train.init_from"):
        load_config(bad)


def test_stage_two_trains_on_integer_noise_levels_below_the_maximum(model):
    from openimagen.cascade import load_stage_weights
    from openimagen.train import build_stage_config
    from openimagen.train.config import load_config
    from openimagen.train.step import TextEmbedder, micro_batch_loss, sample_generators

    config = load_config(if_config(model, "stage1_sr32", 32, 16, max_aug_level=0.25))
    stage = build_stage_config(config)
    net = load_stage_weights(stage, model / "stage1_sr32").unet
    seen = []
    net.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs), with_kwargs=True)
    embed = TextEmbedder(config, torch.device("cpu"))
    images = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    emb, mask = embed(["a red circle"] * 8)
    losses = micro_batch_loss(net, stage, config, images, emb, mask, sample_generators(7, 0, 8),
                              null_text=embed([""]))  # fmt: skip
    levels = seen[0]["aug_level"]
    assert torch.equal(levels, levels.round()) and bool(((levels >= 0) & (levels < 250)).all())
    assert len(set(levels.tolist())) > 1 and seen[0]["lowres"].shape == (8, 3, 32, 32)
    assert bool(torch.isfinite(losses).all())
