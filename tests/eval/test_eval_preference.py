"""Preference rates (eval/preference.py): shares that sum to one, and the results page's words."""

from __future__ import annotations

import re

from openimagen.eval.preference import results_html, summarize_votes


def _vote(rater: str, quality: str, alignment: str, category: str = "Colors") -> dict:
    return {"rater": rater, "left_model": "x", "right_model": "y", "quality": quality,
            "alignment": alignment, "category": category}  # fmt: skip


def test_shares_of_each_block_sum_to_one_and_follow_the_sides():
    votes = [_vote("r", "A", "B"), _vote("r", "B", "B"), _vote("r", "indifferent", "A")]
    summary = summarize_votes(votes, ["y", "x"], ["Colors", "Text"])
    quality = summary["questions"]["quality"]["all"]
    assert quality["preferred"]["x"]["count"] == 1 and quality["preferred"]["y"]["count"] == 1
    alignment = summary["questions"]["alignment"]["all"]
    assert alignment["preferred"]["y"]["count"] == 2
    rates = [p["rate"] for p in alignment["preferred"].values()] + [alignment["indifferent"]["rate"]]
    assert abs(sum(rates) - 1) < 1e-12
    assert summary["questions"]["quality"]["categories"]["Text"]["votes"] == 0


def test_results_page_counts_votes_and_raters_in_words():
    one = results_html(summarize_votes([_vote("ann", "A", "A")], ["x", "y"], ["Colors"]), "t")
    assert re.search(r"1 vote by 1 rater \(ann\)", one)
    two = [_vote("ann", "A", "A"), _vote("bob", "B", "A")]
    assert "2 votes by 2 raters (ann, bob)" in results_html(summarize_votes(two, ["x", "y"], ["Colors"]), "t")
