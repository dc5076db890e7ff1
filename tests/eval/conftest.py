"""Fixtures of the coco tests: randomly initialised FID and CLIP weights files, made once.

They import torch-fidelity and open_clip, so only tests marked ``coco`` (run in the
evaluation environment) use them.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory):
    """torch-fidelity's InceptionV3, random weights, in its own file format (a state dict)."""
    from metrics_testutil import random_inception_weights

    return random_inception_weights(tmp_path_factory.mktemp("inception") / "inception.pth")


@pytest.fixture(scope="session")
def tiny_clip_files(tmp_path_factory):
    """(config .json, .safetensors checkpoint) of a small random open_clip model."""
    from metrics_testutil import tiny_clip

    return tiny_clip(tmp_path_factory.mktemp("clip"))
