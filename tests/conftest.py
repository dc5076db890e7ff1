"""Shared fixtures: small, fast, CPU-only."""

from __future__ import annotations

import os

import pytest
import torch

# Tests must never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session", autouse=True)
def c2pa_config_home(tmp_path_factory):
    """XDG_CONFIG_HOME in a temporary directory, so the local development certificate of
    Content Credentials is made there (once per session), never in the user's ~/.config;
    servers started as processes inherit it."""
    home = tmp_path_factory.mktemp("xdg-config")
    old = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("XDG_CONFIG_HOME", None)
    else:
        os.environ["XDG_CONFIG_HOME"] = old


@pytest.fixture(scope="session")
def minilm():
    """The bundled pretrained text encoder (loaded once per test session)."""
    from openimagen.text import load_text_encoder

    return load_text_encoder("minilm", max_length=32)


@pytest.fixture(scope="module")
def tiny_model_dir(minilm, tmp_path_factory):
    """A tiny random two-stage cascade saved as a model directory (one per test module)."""
    from cascade_testutil import tiny_cascade

    return tiny_cascade(minilm).save(tmp_path_factory.mktemp("tiny") / "model")
