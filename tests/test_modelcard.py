"""Model cards: generated from the model directory's files, evaluation recorded into them."""

from __future__ import annotations

import json

import pytest

from openimagen.cascade import EVALUATION_FILE
from openimagen.errors import ModelDirectoryError
from openimagen.modelcard import (
    read_model_card,
    record_evaluation,
    training_seconds,
    write_model_card,
)


def _rate(correct: int, total: int) -> dict:
    from openimagen.eval.stats import wilson_interval

    return {"correct": correct, "total": total, "accuracy": correct / total,
            "ci95": list(wilson_interval(correct, total))}  # fmt: skip


def _report(right: int) -> dict:
    attrs = {a: _rate(right, 20) for a in ("count", "color", "shape", "size", "relation")}
    return {
        "settings": {"num_prompts": 10, "num_per_prompt": 2, "seed": 0, "stages": 2},
        "summary": {"num_images": 20, "all_correct": _rate(right, 20), "attributes": attrs,
                    "categories": {"relation": {"num_images": 20, "all_correct": _rate(3, 20),
                                                "attributes": attrs}}},
    }  # fmt: skip


def test_modelcard_records_evaluation_and_lists_failure_modes(tiny_model_dir, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    write_model_card(model)
    card = read_model_card(model)
    assert "Not evaluated yet" in card and "| `stage0_base" in card
    assert "not recorded" in card  # no training.json: said so, not invented
    record_evaluation(model, "paraphrase", _report(15))
    record_evaluation(model, "heldout_compositions", _report(16))
    card = read_model_card(model)
    assert "| paraphrase | 20 | 75.0% [53, 89]" in card
    assert "| heldout_compositions | 20 | 80.0%" in card
    # the relation category at 3/20 is below the failure threshold, per split
    assert "- paraphrase, relation prompts: all-correct 15.0%" in card
    saved = json.loads((model / EVALUATION_FILE).read_text())
    assert set(saved) == {"paraphrase", "heldout_compositions"}
    record_evaluation(model, "paraphrase", _report(2))  # a re-run replaces its split
    card = read_model_card(model)
    assert "| paraphrase | 20 | 10.0%" in card and "- paraphrase: color right in only" in card


def test_modelcard_missing_is_a_clear_error(tmp_path):
    with pytest.raises(ModelDirectoryError, match="no model card"):
        read_model_card(tmp_path)
    with pytest.raises(ModelDirectoryError, match="cascade.json missing"):
        write_model_card(tmp_path)


def test_modelcard_training_time_skips_pauses(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    # logged every 10 s, with a 2-hour pause (stopped, resumed later) after the third line
    times = [0, 10, 20, 7220, 7230]
    metrics.write_text("".join(json.dumps({"step": i, "time": t}) + "\n"
                               for i, t in enumerate(times)))  # fmt: skip
    assert training_seconds(metrics) == pytest.approx(50.0)
    assert training_seconds(tmp_path / "none.jsonl") is None
