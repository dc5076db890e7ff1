"""``openimagen info`` (cli/info.py)."""

from __future__ import annotations

from cli_testutil import run


def test_info_preset_prints_the_parameter_count(capsys):
    code, out, _ = run(["info", "--preset", "imagen-base-64"], capsys)
    assert code == 0 and "imagen-base-64" in out and "param" in out.lower()
