"""SamplingConfig (cascade/sampling.py): the one source of sampling names and limits."""

from __future__ import annotations

import pytest

from cascade_testutil import FAST
from openimagen.errors import InvalidArgumentError


@pytest.mark.parametrize(
    ("field", "value"),
    [("steps", 0), ("guidance_weight", -1.0), ("dynamic_threshold_percentile", 0.0),
     ("eta", 1.5), ("eta", -0.1), ("noise_aug_level", 1.5), ("precision", "fp16")],
)  # fmt: skip
def test_bad_sampling_settings_name_the_field(field, value):
    with pytest.raises(InvalidArgumentError, match=field):
        FAST.replace(**{field: value})


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [("sampler", "euler", "'ddpm', 'ddim', 'dpmpp_2m'"),
     ("threshold", "dynamc", "'none', 'static', 'dynamic'"),
     ("precision", "fp16", "'fp32', 'bf16'"),
     ("steps", 10001, r"an integer in \[1, 10000\]"),
     ("steps", 2.5, "an integer"),
     ("guidance_weight", float("nan"), r"a number in \[0, 100\]"),
     ("guidance_weight", True, "a number"),
     ("dynamic_threshold_percentile", 0, r"a number in \(0, 100\]")],
)  # fmt: skip
def test_a_bad_setting_fails_when_the_config_is_made_naming_what_is_allowed(field, value, allowed):
    from openimagen.cascade import SamplingConfig

    with pytest.raises(InvalidArgumentError, match=rf"{field}=.*expected .*{allowed}"):
        SamplingConfig(**{field: value})


def test_the_names_come_from_the_diffusion_registries():
    from openimagen.cascade import CHOICES, SamplingConfig
    from openimagen.diffusion import SAMPLERS, THRESHOLDS

    assert CHOICES["sampler"] == tuple(SAMPLERS) and CHOICES["threshold"] == THRESHOLDS
    for sampler in SAMPLERS:  # every registered sampler is a valid setting
        assert SamplingConfig(sampler=sampler).sampler == sampler
    # cascade.json is read through the same names (Config.from_dict checks the Literal)
    from openimagen.errors import ConfigError

    with pytest.raises(ConfigError, match="'euler' is not one of 'ddpm', 'ddim', 'dpmpp_2m'"):
        SamplingConfig.from_dict({"sampler": "euler"})


def test_limits_accept_their_edges_and_refuse_beyond():
    from openimagen.cascade import LIMITS, SamplingConfig

    for name, limit in LIMITS.items():
        high = int(limit.high) if limit.integer else limit.high
        assert getattr(SamplingConfig(**{name: high}), name) == high
        if not limit.low_open:
            low = int(limit.low) if limit.integer else limit.low
            assert getattr(SamplingConfig(**{name: low}), name) == low
        with pytest.raises(InvalidArgumentError, match=name):
            SamplingConfig(**{name: high + 1})
        with pytest.raises(InvalidArgumentError, match=name):
            SamplingConfig(**{name: limit.low - (0 if limit.low_open else 1)})


def test_limit_describes_itself_as_errors_and_help_text_say_it():
    from openimagen.cascade import Limit

    assert Limit(1, 10000, integer=True).describe() == "an integer in [1, 10000]"
    assert Limit(0.0, 100.0, low_open=True).describe() == "a number in (0, 100]"
    assert Limit(0.0, 1.0).allows(0.0) and not Limit(0.0, 1.0, low_open=True).allows(0.0)
    assert not Limit(1, 5, integer=True).allows(2.0)
