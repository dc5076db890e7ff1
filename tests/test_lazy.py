"""Packages that import their submodules on first use (lazy.py): diffusion, cascade, serve."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_re_export_is_the_submodules_object_and_is_kept():
    import openimagen.cascade as cascade
    from openimagen.cascade.pipeline import Cascade

    assert cascade.Cascade is Cascade and vars(cascade)["Cascade"] is Cascade


def test_an_unknown_name_is_an_attribute_error_naming_it():
    import openimagen.diffusion as diffusion

    with pytest.raises(AttributeError, match="'openimagen.diffusion' has no attribute 'euler'"):
        _ = diffusion.euler


def test_every_listed_name_resolves():
    import openimagen.cascade
    import openimagen.diffusion
    import openimagen.serve

    for package in (openimagen.cascade, openimagen.diffusion, openimagen.serve):
        for name in package.__all__:
            assert getattr(package, name) is not None, (package.__name__, name)


def test_the_sampling_settings_and_their_names_load_without_torch():
    out = _run(
        "import sys; from openimagen.cascade import SamplingConfig, CHOICES\n"
        "import openimagen.diffusion as d; d.SAMPLER_NAMES; hasattr(d, '__wrapped__')\n"
        "print('torch' in sys.modules, 'openimagen.cascade.pipeline' in sys.modules)"
    )
    assert out == "False False"
