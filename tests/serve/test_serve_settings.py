"""Server limits (serve/settings.py): checked when made, sampling limits from SamplingConfig."""

from __future__ import annotations

import pytest

from openimagen.cascade import LIMITS
from openimagen.errors import ConfigError
from openimagen.serve.settings import ServeSettings


def test_max_steps_may_not_exceed_what_a_stage_accepts():
    high = int(LIMITS["steps"].high)
    assert ServeSettings(max_steps=high).max_steps == high
    with pytest.raises(ConfigError, match=rf"max_steps={high + 1}: expected an integer in \[1, "):
        ServeSettings(max_steps=high + 1)


def test_a_request_of_n_images_must_fit_one_batch():
    with pytest.raises(ConfigError, match="max_batch_images=2 is smaller than max_n=3"):
        ServeSettings(max_n=3, max_batch_images=2)


def test_the_key_is_never_shown():
    assert "s3cret" not in repr(ServeSettings(api_key="s3cret"))
