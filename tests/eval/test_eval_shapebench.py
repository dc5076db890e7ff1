"""ShapeBench scoring: right images pass, wrong images fail for the right reason."""

from __future__ import annotations

import json
import re

import pytest
import torch

from openimagen.data.shapes import (
    SPLITS,
    Layout,
    PlacedObject,
    ShapeObject,
    ShapesConfig,
    ShapeSpec,
    render,
    render_layout,
)
from openimagen.errors import InvalidArgumentError
from openimagen.eval.shapebench import (
    CATEGORIES,
    builtin_prompts,
    load_prompt_file,
    run_shapebench,
    score_image,
)

SPEC = ShapeSpec(
    (
        ShapeObject("circle", "red", "large"),
        ShapeObject("square", "blue", "small"),
        ShapeObject("triangle", "green"),
    ),
    ((0, "left_of", 1),),
    "black",
    prompt="a big red circle left of a small blue square, and a green triangle, on black",
)
CIRCLE = PlacedObject("circle", "red", "large", 0.25, 0.3, 0.16)
SQUARE = PlacedObject("square", "blue", "small", 0.75, 0.35, 0.09)
TRIANGLE = PlacedObject("triangle", "green", "small", 0.5, 0.75, 0.09)


def _score(*objects: PlacedObject, background: str = "black", resolution: int = 32):
    image = render_layout(Layout(objects, background), resolution)
    return score_image(torch.from_numpy(image).permute(2, 0, 1) * 2 - 1, SPEC)


def _moved(obj: PlacedObject, **changes) -> PlacedObject:
    fields = {**obj.__dict__, **changes}
    return PlacedObject(**fields)


@pytest.mark.parametrize("resolution", [32, 128])
def test_eval_right_image_is_all_correct(resolution):
    result = _score(CIRCLE, SQUARE, TRIANGLE, resolution=resolution)
    assert result.all_correct and result.reason == ""
    assert result.attributes == {
        "count": True, "color": True, "shape": True, "size": True, "relation": True, "background": True,
    }  # fmt: skip


# (wrong image, the attribute that must fail, words its reason must contain)
WRONG = {
    "colour changed": ((_moved(CIRCLE, color="yellow"), SQUARE, TRIANGLE), "color", ["red circle", "is yellow"]),
    "colours swapped": (
        (_moved(CIRCLE, color="blue"), _moved(SQUARE, color="red"), TRIANGLE), "color", ["red circle", "is blue"]
    ),
    "object missing": ((CIRCLE, SQUARE), "count", ["found 2 objects, expected 3", "missing: green triangle"]),
    "extra object": (
        (CIRCLE, SQUARE, TRIANGLE, PlacedObject("circle", "purple", "small", 0.8, 0.8, 0.09)),
        "count", ["found 4 objects", "extra: small purple circle"],
    ),
    "relation reversed": (
        (_moved(CIRCLE, cx=0.75), _moved(SQUARE, cx=0.25), TRIANGLE), "relation", ["is not left_of"]
    ),
    "wrong shape": ((_moved(CIRCLE, shape="triangle"), SQUARE, TRIANGLE), "shape", ["red circle", "is triangle"]),
    "wrong size": ((_moved(CIRCLE, radius=0.09), SQUARE, TRIANGLE), "size", ["large red circle", "is small"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(WRONG))
def test_eval_wrong_image_fails_for_the_right_reason(case):
    objects, attribute, words = WRONG[case]
    result = _score(*objects)
    assert not result.all_correct
    failed = {k for k, v in result.attributes.items() if v is False}
    assert failed == {attribute}, (failed, result.reason)
    assert set(result.reasons) == {attribute}
    for word in words:
        assert word in result.reasons[attribute], result.reasons[attribute]


def test_eval_wrong_background_and_missing_relation_object():
    result = _score(CIRCLE, SQUARE, TRIANGLE, background="white")
    assert {k for k, v in result.attributes.items() if v is False} == {"background"}
    assert "is white, expected black" in result.reasons["background"]
    result = _score(CIRCLE, TRIANGLE)  # the square in the relation is missing
    assert {k for k, v in result.attributes.items() if v is False} == {"count", "relation"}
    assert "not found: small blue square (object 1)" in result.reasons["relation"]
    blank = _score()
    assert blank.attributes["count"] is False and blank.attributes["color"] is False
    assert "nothing matched" in blank.reasons["color"]


def test_eval_unasked_attributes_are_not_scored():
    spec = ShapeSpec((ShapeObject("square", "orange"),))
    image = render(spec, 32, seed=0)
    result = score_image(image, spec)
    assert result.all_correct
    assert result.attributes["size"] is None and result.attributes["relation"] is None
    assert result.attributes["background"] is None


# -- prompt files ----------------------------------------------------------------------------
GOOD = {"prompt": "a red circle", "objects": [{"shape": "circle", "color": "red", "size": None}],
        "relations": [], "background": None}  # fmt: skip


def _write(tmp_path, *records) -> str:
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return str(path)


def test_eval_prompt_file_loads():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        two = dict(GOOD, prompt="a red circle above a blue square",
                   objects=[*GOOD["objects"], {"shape": "square", "color": "blue", "size": "large"}],
                   relations=[[0, "above", 1]], category="relation")  # fmt: skip
        specs = load_prompt_file(_write(Path(tmp), GOOD, "", two))
    assert [s.prompt for s in specs] == ["a red circle", "a red circle above a blue square"]
    assert specs[1].relations == ((0, "above", 1),) and specs[1].category == "relation"


@pytest.mark.parametrize(
    ("bad", "line", "field_pattern"),
    [
        (
            '{"prompt": "a red circle", "objects": [',
            2,
            r"line 2=.* one JSON object per line.*Invalid JSON",
        ),
        (
            dict(GOOD, objects=[{"shape": "circle", "color": "pink"}]),
            2,
            r"line 2: spec\.objects\[0\]\.color='pink'",
        ),
        (
            dict(GOOD, relations=[[0, "left_of", 3]]),
            2,
            r"line 2: spec\.relations\[0\]\[2\]=3 .* 0\.\.0",
        ),
        (
            dict(GOOD, relations=[[0, "beside", 0]]),
            2,
            r"line 2: spec\.relations\[0\]\[1\]='beside'",
        ),
        (
            dict(GOOD, objects=[{"shape": "hexagon", "color": "red"}]),
            2,
            r"line 2: spec\.objects\[0\]\.shape",
        ),
        (dict(GOOD, background="pink"), 2, r"line 2: spec\.background='pink'"),
        (dict(GOOD, prompt=""), 2, r"line 2: spec\.prompt"),
        (dict(GOOD, objects=[]), 2, r"line 2: spec\.objects=\[\]"),
    ],
)
def test_eval_malformed_prompt_file_names_line_and_field(tmp_path, bad, line, field_pattern):
    path = _write(tmp_path, GOOD, bad)
    with pytest.raises(InvalidArgumentError, match=field_pattern) as info:
        load_prompt_file(path)
    assert str(info.value).startswith(f"{path} line {line}")


def test_eval_missing_or_empty_prompt_file(tmp_path):
    with pytest.raises(InvalidArgumentError, match="readable"):
        load_prompt_file(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InvalidArgumentError, match="at least one spec"):
        load_prompt_file(tmp_path / "empty.jsonl")


# -- built-in suites -------------------------------------------------------------------------
def test_eval_builtin_prompts_cover_categories_and_splits():
    config = ShapesConfig()
    held = set(config.heldout_pairs)
    for split in SPLITS:
        specs = builtin_prompts(split, 40, seed=3)
        assert specs == builtin_prompts(split, 40, seed=3)  # deterministic
        assert [s.category for s in specs[: len(CATEGORIES)]] == list(CATEGORIES)
        for spec in specs:
            pairs = {(o.color, o.shape) for o in spec.objects}
            assert bool(pairs & held) == (split == "heldout_compositions"), spec
            assert spec.prompt and ShapeSpec.from_dict(spec.to_dict()) == spec
            if spec.category == "counting":
                assert 2 <= len(spec.objects) <= 4 and len(set(spec.objects)) == 1
            if spec.category == "relation":
                assert len(spec.objects) == 2 and len(spec.relations) == 1
            if spec.category == "group_relation":  # "two red circles above a blue square"
                *group, other = spec.objects
                assert len(group) in (2, 3) and len(set(group)) == 1 and other != group[0]
                assert {(a, b) for a, _, b in spec.relations} == {
                    (i, len(group)) for i in range(len(group))
                }
    assert builtin_prompts("train", 10, seed=0) != builtin_prompts("train", 10, seed=1)
    with pytest.raises(InvalidArgumentError, match="split"):
        builtin_prompts("test", 10)


# -- running a model end to end --------------------------------------------------------------
def _renderer(specs, *, wrong: bool = False):
    by_prompt = {s.prompt: s for s in specs}

    def generate(prompts: list[str], seeds: list[int]) -> torch.Tensor:
        images = []
        for prompt, seed in zip(prompts, seeds, strict=True):
            spec = by_prompt[prompt]
            if wrong:  # every object comes out purple: wrong colour unless it was purple
                objects = tuple(ShapeObject(o.shape, "purple", o.size) for o in spec.objects)
                spec = ShapeSpec(objects, spec.relations, spec.background)
            images.append(render(spec, 32, seed=seed))
        return torch.stack(images)  # [N, 3, 32, 32]

    return generate


def test_eval_run_shapebench_scores_perfect_and_wrong_generators(tmp_path):
    specs = builtin_prompts("train", 10, seed=0)
    report = run_shapebench(
        _renderer(specs), specs, tmp_path / "good", num_per_prompt=2, batch_size=3, progress=False
    )
    summary = report["summary"]
    assert summary["all_correct"]["correct"] == summary["all_correct"]["total"] == 20
    assert summary["all_correct"]["ci95"][0] > 0.8
    assert set(summary["categories"]) == set(CATEGORIES)
    on_disk = json.loads((tmp_path / "good" / "report.json").read_text())
    assert on_disk["summary"] == json.loads(json.dumps(summary))
    for row in on_disk["results"]:
        assert (tmp_path / "good" / row["image"]).is_file()
    assert [r["seed"] for r in on_disk["results"]] == list(range(20))  # seed + i * K + k
    page = (tmp_path / "good" / "index.html").read_text()
    assert page.count("class='cell ok'") == 20 and "class='cell bad'" not in page

    bad = run_shapebench(
        _renderer(specs, wrong=True),
        specs,
        tmp_path / "bad",
        num_per_prompt=2,
        batch_size=16,
        progress=False,
    )
    purple = [
        r for r in bad["results"] if all(o["color"] == "purple" for o in r["spec"]["objects"])
    ]
    wrong = [r for r in bad["results"] if r not in purple]
    assert wrong and all(not r["all_correct"] and r["attributes"]["color"] is False for r in wrong)
    assert all("is purple" in r["reason"] for r in wrong)
    assert bad["summary"]["attributes"]["count"]["accuracy"] == 1.0  # only the colours are wrong
    page = (tmp_path / "bad" / "index.html").read_text()
    assert page.count("class='cell bad'") == len(wrong)
    assert re.search(r"wrong: color: .* is purple", page)
    # the seeds do not depend on the batch size
    assert [r["seed"] for r in bad["results"]] == [r["seed"] for r in on_disk["results"]]


def test_eval_run_shapebench_checks_generator_output(tmp_path):
    specs = builtin_prompts("train", 2, seed=0)
    with pytest.raises(InvalidArgumentError, match=r"generate_fn"):
        run_shapebench(lambda p, s: torch.zeros(len(p), 32, 32), specs, tmp_path, progress=False)
