"""``openimagen eval shapebench``: a report from a model directory, clear errors for bad files."""

from __future__ import annotations

import json

from cli_testutil import run


def test_eval_shapebench_writes_a_report_that_matches_what_it_prints(
    tiny_model_dir, tmp_path, capsys
):
    out = tmp_path / "report"
    code, stdout, _ = run(
        ["eval", "shapebench", "--model", str(tiny_model_dir), "--split", "paraphrase",
         "--num-prompts", "3", "--num-per-prompt", "2", "--steps", "2", "--stages", "1",
         "--out", str(out), "-q"],
        capsys,
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["num_prompts"] == 3 and report["settings"]["num_per_prompt"] == 2
    assert report["settings"]["prompts"] == "builtin:paraphrase"
    assert report["settings"]["stages"] == 1 and report["settings"]["resolution"] == [16, 16]
    assert [s["steps"] for s in report["settings"]["sampling"]] == [2]
    assert len(report["results"]) == 6
    assert len(list((out / "images").glob("*.png"))) == 6
    assert "<img" in (out / "index.html").read_text()
    all_correct = report["summary"]["all_correct"]
    line = next(x for x in stdout.splitlines() if x.startswith("all_correct"))
    assert f"({all_correct['correct']}/{all_correct['total']})" in line


def test_eval_shapebench_names_the_bad_line_of_a_prompt_file(tiny_model_dir, tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    good = {"prompt": "a red circle", "objects": [{"shape": "circle", "color": "red"}]}
    bad = {"prompt": "a teal circle", "objects": [{"shape": "circle", "color": "teal"}]}
    prompts.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    code, _, err = run(
        ["eval", "shapebench", "--model", str(tiny_model_dir), "--prompts", str(prompts),
         "--out", str(tmp_path / "r")],
        capsys,
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1
    assert "line 2" in err and "teal" in err
    assert not (tmp_path / "r").exists()
