"""The tiny cascade and its saved model directory, shared by the cascade tests."""

from __future__ import annotations

import pytest

from cascade_testutil import tiny_cascade


@pytest.fixture(scope="module")
def cascade(minilm):
    return tiny_cascade(minilm)


@pytest.fixture(scope="module")
def saved(cascade, tmp_path_factory):
    return cascade.save(tmp_path_factory.mktemp("models") / "tiny")
