"""Tiny IF checkpoints (tests/if_testutil.py) and their import, shared by the interop tests."""

from __future__ import annotations

import pytest

from if_testutil import tiny_if_checkpoints


@pytest.fixture(scope="session")
def if_checkpoints(tmp_path_factory):
    """(stage I dir, stage II dir, imported model dir), built once per session."""
    from openimagen.interop import import_deepfloyd_if

    root = tmp_path_factory.mktemp("if")
    stage1, stage2 = tiny_if_checkpoints(root)
    return stage1, stage2, import_deepfloyd_if(stage1, stage2, root / "model")
