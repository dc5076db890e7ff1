"""A small DrawBench run of two tiny random models, shared by the rating-page tests."""

from __future__ import annotations

import pytest

from cascade_testutil import tiny_cascade
from openimagen.eval.drawbench import ModelSpec, run_drawbench
from openimagen.eval.prompts import load_prompt_suite

PROMPTS = "Prompt,Category\nA red colored car.,Colors\nOne cat on a mat.,Counting\nTwo dogs.,Counting\nA blue bird.,Colors \n"  # fmt: skip


@pytest.fixture(scope="module")
def drawbench_run(minilm, tmp_path_factory):
    """A finished run: models "alpha" and "beta", 4 prompts in 2 categories, 2 images each."""
    root = tmp_path_factory.mktemp("rating")
    prompts = root / "prompts.csv"
    prompts.write_text(PROMPTS, encoding="utf-8")
    models = [
        ModelSpec(name, tiny_cascade(minilm, seed=seed).save(root / name))
        for name, seed in (("alpha", 0), ("beta", 1))
    ]
    out = root / "run"
    run_drawbench(models, load_prompt_suite(prompts), out, num_per_prompt=2,
                  sampling_overrides={"steps": 2}, progress=False)  # fmt: skip
    return out
