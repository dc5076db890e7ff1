"""Shared helpers for the training tests: small configs, TOML writing, subprocess runs."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

# A tiny base stage on the shapes world: the tiny-base preset cut to one 16x16 level, so a
# step takes ~10 ms on one CPU core. The mechanics under test do not depend on its size.
TINY_UNET = {
    "image_size": 16,
    "base_channels": 8,
    "channel_mults": [1],
    "num_res_blocks": [1],
    "cross_attention_levels": [True],
    "self_attention_levels": [False],
    "attention_head_dim": 8,
    "cond_dim": 16,
}
TINY_BASE: dict[str, Any] = {
    "stage": {"preset": "tiny-base", "resolution": 16, "unet": TINY_UNET},
    "text": {"encoder": "minilm", "max_length": 32},
    "data": {"source": "shapes", "seed": 3},
    "optim": {"name": "adamw", "lr": 1e-3, "warmup_steps": 3},
    "train": {
        "steps": 24,
        "batch_size": 4,
        "device": "cpu",
        "seed": 7,
        "checkpoint_every": 4,
        "keep_last": 3,
        "ema_decay": 0.9,
    },
    "log": {"every": 1, "progress": False, "tensorboard": False},
}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine, 2 OpenMP threads run ~30x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_config(**sections: dict[str, Any]) -> dict[str, Any]:
    """TINY_BASE with some keys of some sections replaced (``stage.unet`` merged)."""
    config = copy.deepcopy(TINY_BASE)
    for name, values in sections.items():
        values = copy.deepcopy(values)
        if name == "stage" and "unet" in values:  # U-Net overrides merge into TINY_UNET
            values["unet"] = {**config["stage"]["unet"], **values["unet"]}
        config.setdefault(name, {}).update(values)
    return config


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def write_toml(config: dict[str, Any], path: Path) -> Path:
    """A two-level dict (sections of keys) as a TOML file."""
    lines = []
    for section, values in config.items():
        if not isinstance(values, dict):
            lines.append(f"{section} = {_toml_value(values)}")
    for section, values in config.items():
        if isinstance(values, dict):
            lines.append(f"[{section}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def subprocess_env(**extra: str) -> dict[str, str]:
    # one thread, as in the tests' own process (so float reductions run in the same order)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    env.update(extra)
    return env


def start_training(config_path: Path, output: Path, *args: str, **env: str) -> subprocess.Popen:
    """``python -m openimagen.train CONFIG --output OUTPUT`` in a child process."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "openimagen.train",
            str(config_path),
            "--output",
            str(output),
            *args,
        ],
        env=subprocess_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def losses_by_step(output: Path) -> dict[int, float]:
    from openimagen.train.logging import read_metrics

    return {r["step"]: r["loss"] for r in read_metrics(output / "metrics.jsonl")}
