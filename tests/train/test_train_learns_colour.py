"""A tiny base model trained briefly on one-colour shapes draws shapes of that colour."""

from __future__ import annotations

import time

import torch
from train_testutil import (
    make_config,
    one_thread,  # noqa: F401  (autouse fixture)
)

from openimagen.cascade import SamplingConfig
from openimagen.data.shapes import ShapesConfig
from openimagen.eval.detector import detect
from openimagen.train import load_ema_stage, run_training

STEPS = 300
SAMPLES = 16


def test_tiny_base_learns_the_colour_of_a_one_colour_world(tmp_path, minilm):
    # Only green objects, one per scene, on black: a model that learned the data draws green.
    world = {"colors": ["green"], "heldout_pairs": [], "backgrounds": ["black"],
             "max_objects": 1}  # fmt: skip
    config = make_config(
        data={"shapes": world},
        optim={"lr": 2e-3, "warmup_steps": 20},
        train={"steps": STEPS, "batch_size": 8, "checkpoint_every": STEPS, "ema_decay": 0.98,
               "text_dropout": 0.1},
        log={"every": 50},
    )  # fmt: skip
    config["stage"] = {"preset": "tiny-base", "resolution": 32}  # the preset as it is
    started = time.perf_counter()
    result = run_training(config, tmp_path / "run")
    trained_s = time.perf_counter() - started
    assert sum(result.losses[-50:]) < sum(result.losses[:50])

    stage, _ = load_ema_stage(result.checkpoint)
    prompts = ["a green circle", "a green square", "a big green triangle", "a small green disk"]
    prompts = (prompts * SAMPLES)[:SAMPLES]
    emb, mask = minilm.encode(prompts)
    gens = [torch.Generator().manual_seed(i) for i in range(SAMPLES)]
    sampling = SamplingConfig(sampler="ddim", steps=20, guidance_weight=1.0)
    images = stage.sample(emb, mask, gens, sampling)  # [N, 3, 32, 32]

    colours = []
    for image in images:
        found = detect(image, ShapesConfig())  # all six colours: chance is 1/6
        colours += [o.color for o in found.objects]
    green = colours.count("green")
    # well above chance: at least half the images hold a detected object, >= 70% green
    # (no time limit here: speed lives in benchmarks/, and a shared machine makes it noisy)
    assert green >= SAMPLES // 2 and green >= 0.7 * len(colours), (colours, trained_s)
