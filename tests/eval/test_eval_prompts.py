"""Prompt suites: the shipped DrawBench file, user CSV / JSONL files, one-line errors."""

from __future__ import annotations

import csv
import importlib.resources
import json

import pytest

from openimagen.errors import InvalidArgumentError
from openimagen.eval.prompts import DRAWBENCH_SOURCE, drawbench, load_prompt_suite

# Counts per category as the data README states them (an independent record of the file)
README_COUNTS = {
    "Reddit": 38, "Colors": 25, "Text": 21, "DALL-E": 20, "Descriptions": 20, "Positional": 20,
    "Counting": 19, "Conflicting": 10, "Gary Marcus et al.": 10, "Misspellings": 10,
    "Rare Words": 7,
}  # fmt: skip


def test_drawbench_has_200_prompts_in_the_11_documented_categories():
    suite = drawbench()
    counts = {c: sum(p.category == c for p in suite.prompts) for c in suite.categories}
    assert counts == README_COUNTS
    assert [p.index for p in suite.prompts] == list(range(200))
    assert "Saharia" in suite.source and suite.source == DRAWBENCH_SOURCE


def test_drawbench_keeps_the_source_text_and_only_strips_category_labels():
    shipped = importlib.resources.files("openimagen.eval") / "data" / "drawbench.csv"
    raw = list(csv.DictReader(shipped.read_text(encoding="utf-8").splitlines()))
    suite = drawbench()
    assert [p.text for p in suite.prompts] == [r["Prompt"] for r in raw]
    assert "Gary Marcus et al. " in {r["Category"] for r in raw}  # the source's trailing space
    assert [p.category for p in suite.prompts] == [r["Category"].strip() for r in raw]
    assert "drawbench" == load_prompt_suite(None).name == load_prompt_suite("drawbench").name


def test_a_subset_takes_prompts_round_robin_over_categories_and_keeps_indices():
    suite = drawbench()
    subset = suite.select(22)
    assert len(subset) == 22
    assert {c: sum(p.category == c for p in subset) for c in suite.categories} == dict.fromkeys(
        suite.categories, 2
    )
    assert all(suite.prompts[p.index] == p for p in subset)
    assert suite.select(None) == list(suite.prompts) == suite.select(500)


def test_user_csv_any_header_case_extra_columns_quotes_and_bom(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(
        '\ufeffNote,PROMPT,category\nx,"A cat, a dog.",  Animals \n,,\ny,A red car.,Colors\n',
        encoding="utf-8",
    )
    suite = load_prompt_suite(path)
    assert [(p.index, p.text, p.category) for p in suite.prompts] == [
        (0, "A cat, a dog.", "Animals"),
        (1, "A red car.", "Colors"),
    ]
    assert suite.name == "mine" and suite.categories == ["Animals", "Colors"]


def test_user_jsonl(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [
        {"prompt": "A red car.", "category": "Colors"},
        {"Prompt": "Two cats.", "Category": "Counting"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    suite = load_prompt_suite(path)
    assert [(p.text, p.category) for p in suite.prompts] == [
        ("A red car.", "Colors"),
        ("Two cats.", "Counting"),
    ]


def test_the_fingerprint_follows_the_prompts(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("Prompt,Category\nA red car.,Colors\n")
    b.write_text("Prompt,Category\nA red car!,Colors\n")
    assert load_prompt_suite(a).fingerprint() == load_prompt_suite(a).fingerprint()
    assert load_prompt_suite(a).fingerprint() != load_prompt_suite(b).fingerprint()


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("p.csv", "Prompt\nA red car.\n", ["line 1", "Category"]),
        ("p.csv", "Prompt,Category\nA red car.,Colors\n  ,Colors\n", ["line 3", "prompt"]),
        ("p.csv", "Prompt,Category\nA red car.,\n", ["line 2", "category"]),
        ("p.csv", "Prompt,Category,Note\nA red car.,Colors\n", ["line 2", "3 columns"]),
        ("p.csv", "", ["line 1", "Prompt and Category"]),
        ("p.csv", "Prompt,Category\n", ["at least one prompt"]),
        ("p.jsonl", '{"prompt": "a", "category": "b"}\n{"prompt": \n', ["line 2", "JSON"]),
        ("p.jsonl", '["a red car", "Colors"]\n', ["line 1", "object"]),
        (
            "p.jsonl",
            '{"prompt": "a", "category": "b"}\n{"prompt": "a\\u001b[31m", "category": "b"}\n',
            ["line 2", "control characters"],
        ),
        ("p.txt", "A red car.\n", [".csv or .jsonl"]),
    ],
)
def test_bad_files_give_one_line_errors_naming_the_place(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidArgumentError) as info:
        load_prompt_suite(path)
    message = str(info.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, message


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(InvalidArgumentError, match="readable UTF-8"):
        load_prompt_suite(tmp_path / "absent.csv")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("Prompt,Category\nCaf\xe9,Food\n".encode("latin-1"))
    with pytest.raises(InvalidArgumentError, match="readable UTF-8"):
        load_prompt_suite(latin)
