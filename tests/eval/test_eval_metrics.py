"""FID and CLIP score equal the libraries' own computation; the missing-library message.

The tests marked ``coco`` need torch-fidelity and open_clip and run in the evaluation
environment (``make test`` runs them there: ``.venv-eval/bin/python -m pytest -m coco``); the
extractors are randomly initialised and saved in each library's own file format, so the
code path is the one a user's real weights take.
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
def folders(tmp_path_factory):
    from metrics_testutil import picture_folder

    root = tmp_path_factory.mktemp("metrics")
    a = picture_folder(root / "a", 16, seed=1)
    b = picture_folder(root / "b", 16, seed=2)
    return root / "a", root / "b", a, b


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    from metrics_testutil import random_inception_weights

    return random_inception_weights(tmp_path_factory.mktemp("inception") / "inception.pth")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from metrics_testutil import tiny_clip

    return tiny_clip(tmp_path_factory.mktemp("clip"))


@coco
# the library's own call, at its defaults, feeds the network from 4 worker processes
@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
def test_fid_equals_torch_fidelity_on_the_same_folders(folders, inception, monkeypatch):
    import torch_fidelity

    # no download can happen: were the weights path ignored, the library would fetch its own
    monkeypatch.setattr(
        "torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url",
        lambda *a, **k: pytest.fail("torch-fidelity tried to download weights"),
    )
    a, b, _, _ = folders
    ours = frechet_inception_distance(a, b, inception, device="cpu", progress=False)
    library = torch_fidelity.calculate_metrics(
        input1=str(a), input2=str(b), fid=True, cuda=False, verbose=False,
        feature_extractor_weights_path=str(inception),
    )["frechet_inception_distance"]  # fmt: skip
    print(f"FID ours {ours!r} torch-fidelity {library!r}")
    assert np.isfinite(ours) and ours > 0
    assert ours == pytest.approx(library, rel=1e-6)


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
        ours = frechet_distance(stats[0]["mu"], stats[0]["sigma"], stats[1]["mu"], stats[1]["sigma"])
        print(f"Frechet n={n} d={d}: ours {ours!r} torch-fidelity {theirs!r}")
        assert ours == pytest.approx(theirs, rel=1e-6)


@coco
def test_clip_score_equals_open_clip_computed_directly(folders, clip):
    import open_clip
    from PIL import Image

    config, checkpoint = clip
    _, _, paths, _ = folders
    captions = [f"a picture with a bright square, number {i}" for i in range(len(paths))]
    ours = clip_score(paths, captions, model=str(config), checkpoint=checkpoint, device="cpu",
                      batch_size=5, progress=False)  # fmt: skip

    model, _, preprocess = open_clip.create_model_and_transforms(
        config.stem, pretrained=str(checkpoint)
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer(config.stem)
    pixels = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        image = model.encode_image(pixels, normalize=True)
        text = model.encode_text(tokenizer(captions), normalize=True)
    cosine = (image * text).sum(dim=-1)
    assert (cosine > 0).any() and (cosine < 0).any()  # so the clipping at 0 is exercised
    direct = float(100 * cosine.clamp(min=0).mean())
    print(f"CLIP score ours {ours!r} open_clip direct {direct!r}")
    assert ours == pytest.approx(direct, rel=1e-5)
    # clipping per pair, not the mean: the unclipped mean is smaller
    assert float(100 * cosine.mean()) < ours


@coco
def test_a_checkpoint_of_another_architecture_is_one_clear_error(clip, tmp_path):
    config, checkpoint = clip
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
