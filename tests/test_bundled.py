"""The bundled shapes-world cascade: shipped, small, loadable, and it draws what it is asked."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

import openimagen
from openimagen.cascade import read_cascade_config
from openimagen.data.shapes import ShapesConfig
from openimagen.eval.detector import detect

BUNDLED = openimagen.BUNDLED_MODEL_DIR


@pytest.fixture(scope="module")
def cascade():
    return openimagen.load()


def test_bundled_model_is_fp16_two_stages_and_under_50_mb():
    config = read_cascade_config(BUNDLED)
    assert config.text_encoder == "minilm"
    files = [p for p in BUNDLED.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 50 * 2**20
    resolutions = []
    for entry in config.stages:
        stage = json.loads((BUNDLED / entry.path / "config.json").read_text())
        resolutions.append((stage["lowres_resolution"], stage["resolution"]))
        with safe_open(BUNDLED / entry.path / "model.safetensors", "pt") as weights:
            dtypes = {weights.get_slice(k).get_dtype() for k in weights.keys()}  # noqa: SIM118
        assert dtypes == {"F16"}
    assert resolutions == [(None, 32), (32, 128)]


def test_generate_without_model_uses_the_bundled_cascade(capsys):
    from openimagen.cli import main

    assert main(["generate", "a red circle", "--dry-run"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["model"] == str(BUNDLED) and len(resolved["stages"]) == 2


@pytest.mark.parametrize("color", ["red", "green", "blue", "yellow", "purple", "orange"])
def test_bundled_base_stage_draws_the_colour_asked_for(cascade, color):
    # base stage only (32x32) to stay fast; four seeds, the detector reads the colours back
    prompts = [
        f"a {color} circle",
        f"a {color} square",
        f"a big {color} triangle",
        f"a {color} box",
    ]
    images = cascade.generate(prompts, [0, 1, 2, 3], num_stages=1)
    assert images.shape == (4, 3, 32, 32)
    right = 0
    for image in images:
        colours = [o.color for o in detect(image, ShapesConfig()).objects]
        right += bool(colours) and colours.count(color) * 2 > len(colours)
    assert right >= 3, f"only {right}/4 images are mostly {color}"


def test_bundled_cascade_full_size_image_is_in_range(cascade):
    image = cascade.generate(["a green square"], [0])
    assert image.shape == (1, 3, 128, 128)
    assert image.dtype == torch.float32 and image.abs().max() <= 1.0
