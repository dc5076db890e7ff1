"""Device choice at run time."""

from __future__ import annotations

import pytest
import torch

from openimagen.device import resolve_device
from openimagen.errors import InvalidArgumentError


def test_auto_picks_cuda_only_when_present():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_bad_device_names_the_value():
    with pytest.raises(InvalidArgumentError, match="device='tpu9' is not valid"):
        resolve_device("tpu9")


def test_cuda_is_used_when_present_and_refused_clearly_when_not():
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(InvalidArgumentError, match="Use --device cpu"):
            resolve_device("cuda")
