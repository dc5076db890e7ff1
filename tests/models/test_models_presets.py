"""Presets: lookup, descriptions and the paper's parameter counts (meta device)."""

from __future__ import annotations

import pytest

from openimagen.errors import InvalidArgumentError
from openimagen.models import (
    PAPER_PARAMETERS,
    count_parameters,
    describe_preset,
    get_preset,
    list_presets,
)


@pytest.mark.parametrize(
    ("name", "paper"),
    [
        ("imagen-base-64", 2_000_000_000),
        ("imagen-sr-64-256", 600_000_000),
        ("imagen-sr-256-1024", 400_000_000),
    ],
)
def test_paper_presets_within_10_percent(name, paper):
    n = count_parameters(get_preset(name))
    assert abs(n - paper) / paper < 0.10, (name, n)
    assert get_preset(name).text_embed_dim == 4096  # T5-XXL
    assert PAPER_PARAMETERS[name] == paper


def test_count_parameters_matches_a_hand_count():
    # a 1-level net small enough to count by hand
    cfg = get_preset(
        "tiny-base",
        base_channels=4,
        channel_mults=(1,),
        num_res_blocks=(1,),
        cross_attention_levels=(False,),
        self_attention_levels=(False,),
        text_embed_dim=2,
        cond_dim=2,
        in_channels=1,
        out_channels=1,
    )
    conv = lambda i, o, k: i * o * k * k + o  # noqa: E731
    lin = lambda i, o: i * o + o  # noqa: E731
    res = 2 * 4 + conv(4, 4, 3) + 2 * 4 + conv(4, 4, 3)  # norm, conv, norm, conv
    expected = (
        conv(1, 4, 3)  # init conv
        + 2 * lin(2, 2)  # time MLP
        + 2 * 2
        + lin(2, 2)
        + lin(2, 2)
        + 2  # text norm, text proj, pool proj, null pooled
        + res  # down block (4 -> 4)
        + 2 * res  # middle
        + (2 * 8 + conv(8, 4, 3) + 2 * 4 + conv(4, 4, 3) + conv(8, 4, 1))  # up block 8 -> 4
        + 2 * 4
        + conv(4, 1, 3)  # out norm, out conv
        + lin(2, 4 * 2 * 4)  # one FiLM linear for 4 res blocks
    )
    assert count_parameters(cfg) == expected


def test_small_presets_sizes_and_no_high_res_attention_for_sr():
    assert 5e6 <= count_parameters(get_preset("shapes-base-32")) <= 15e6
    sr = get_preset("shapes-sr-32-128")
    assert sr.super_resolution and sr.image_size == 128
    assert 3e6 <= count_parameters(sr) <= 10e6
    assert not sr.self_attention_levels[0] and not sr.cross_attention_levels[0]
    assert count_parameters(get_preset("tiny-base")) <= 200_000
    for name in ("imagen-sr-64-256", "imagen-sr-256-1024", "tiny-sr"):
        assert not any(get_preset(name).self_attention_levels)


def test_unknown_preset_lists_names():
    with pytest.raises(InvalidArgumentError, match="tiny-base") as info:
        get_preset("huge")
    assert "huge" in str(info.value)


def test_overrides_apply_and_validate():
    assert get_preset("tiny-base", image_size=64).image_size == 64
    assert set(list_presets()) >= {"tiny-base", "tiny-sr", "shapes-base-32", "imagen-base-64"}


def test_describe_preset_reports_counts_and_paper_difference():
    text = describe_preset("imagen-sr-64-256")
    n = count_parameters(get_preset("imagen-sr-64-256"))
    assert f"{n:,}" in text
    assert "600.00M" in text and "% difference" in text
    # 5 levels, each at half the resolution before it (downsample_first): 128, 64, 32, 16, 8;
    # cross-attention only at the lowest
    assert "levels 128, 64, 32, 16, 8" in text and "cross-attn  8x8" in text
    assert "paper" not in describe_preset("tiny-base")
