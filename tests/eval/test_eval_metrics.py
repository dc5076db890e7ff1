"""The Frechet formula and CLIP score equal the libraries' own; weights-file and library errors.

The tests marked ``coco`` need torch-fidelity and open_clip and run in the evaluation
environment (``make test`` runs them there: ``.venv-eval/bin/python -m pytest -m coco``); the
extractors are randomly initialised and saved in each library's own file format, so the
code path is the one a user's real weights take. The command's FID against torch-fidelity's
own call on the same folders is checked end to end, in tests/eval/test_eval_coco.py.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from openimagen.errors import InvalidArgumentError, MissingDependencyError
from openimagen.eval.frechet import frechet_distance
from openimagen.eval.metrics import (
    check_inception_weights,
    clip_score,
    frechet_inception_distance,
    require_eval_packages,
    resolve_clip_model,
)

coco = pytest.mark.coco


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    from metrics_testutil import picture_folder

    return picture_folder(tmp_path_factory.mktemp("metrics") / "a", 16, seed=1)


@coco
def test_frechet_formula_equals_torch_fidelity_on_the_same_statistics():
    """The shapes world's Frechet formula is torch-fidelity's (TTUR's), written with sqrtm."""
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(0)
    for n, d in ((500, 8), (40, 64)):  # full-rank and rank-deficient covariances
        x = rng.normal(size=(n, d))
        y = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.5 + 0.3
        stats = [{"mu": v.mean(0), "sigma": np.cov(v, rowvar=False)} for v in (x, y)]
        theirs = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
        ours = frechet_distance(
            stats[0]["mu"], stats[0]["sigma"], stats[1]["mu"], stats[1]["sigma"]
        )
        print(f"Frechet n={n} d={d}: ours {ours!r} torch-fidelity {theirs!r}")
        assert ours == pytest.approx(theirs, rel=1e-6)


@coco
def test_clip_score_equals_open_clip_computed_directly(pictures, tiny_clip_files):
    from metrics_testutil import open_clip_cosines

    config, checkpoint = tiny_clip_files
    paths = pictures
    captions = [f"a picture with a bright square, number {i}" for i in range(len(paths))]
    ours = clip_score(paths, captions, model=str(config), checkpoint=checkpoint, device="cpu",
                      batch_size=5, progress=False)  # fmt: skip

    cosine = open_clip_cosines(config, checkpoint, paths, captions)
    assert (cosine > 0).any() and (cosine < 0).any()  # so the clipping at 0 is exercised
    direct = float(100 * cosine.clamp(min=0).mean())
    print(f"CLIP score ours {ours!r} open_clip direct {direct!r}")
    assert ours == pytest.approx(direct, rel=1e-5)
    # clipping per pair, not the mean: the unclipped mean is smaller
    assert float(100 * cosine.mean()) < ours


@coco
def test_a_checkpoint_of_another_architecture_is_one_clear_error(tiny_clip_files, tmp_path):
    config, checkpoint = tiny_clip_files
    with pytest.raises(InvalidArgumentError, match="--clip-checkpoint"):
        clip_score([tmp_path / "x.png"], ["x"], model="ViT-S-32", checkpoint=checkpoint)
    with pytest.raises(InvalidArgumentError, match="--clip-model"):
        clip_score([tmp_path / "x.png"], ["x"], model="no-such-clip", checkpoint=checkpoint)
    # the default architecture is open_clip's, for OpenAI's ViT-L/14 weights
    assert resolve_clip_model("ViT-L-14-quickgelu") == "ViT-L-14-quickgelu"


def test_inception_weights_must_be_a_plain_state_dict(tmp_path):
    with pytest.raises(InvalidArgumentError, match="never downloads"):
        check_inception_weights(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(InvalidArgumentError, match="weights_only=True failed"):
        check_inception_weights(junk)
    other = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(2)}, other)
    with pytest.raises(InvalidArgumentError, match="something else"):
        check_inception_weights(other)

    class Payload:  # a pickle that would run code: refused before the library unpickles it
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": Payload()}, evil)
    with pytest.raises(InvalidArgumentError, match="weights_only=True failed"):
        check_inception_weights(evil)


def test_missing_libraries_are_one_error_that_says_how_to_make_the_eval_env(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # as in the default environment
    with pytest.raises(MissingDependencyError, match="make eval-env") as caught:
        require_eval_packages()
    assert "\n" not in str(caught.value) and "torch-fidelity" in str(caught.value)


def test_fid_needs_two_png_files_a_side_before_anything_is_loaded(tmp_path):
    from metrics_testutil import picture_folder

    two = picture_folder(tmp_path / "two", 2, seed=0)[0].parent
    one = picture_folder(tmp_path / "one", 1, seed=0)[0].parent
    (tmp_path / "empty").mkdir()
    for generated, reference, named in ((tmp_path / "empty", two, "generated_dir"),
                                        (two, one, "reference_dir"),
                                        (tmp_path / "nowhere", two, "generated_dir")):  # fmt: skip
        with pytest.raises(InvalidArgumentError, match=f"{named}=.* at least 2 PNG files"):
            frechet_inception_distance(generated, reference, tmp_path / "weights.pth")
