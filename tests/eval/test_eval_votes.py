"""The vote store (eval/votes.py): random sides kept per rater and prompt, rater orders."""

from __future__ import annotations

import pytest

from openimagen.eval.votes import VoteConflictError, VoteStore, rater_order


def test_sides_are_drawn_at_random_once_and_kept(tmp_path):
    store = VoteStore(tmp_path / "v.sqlite")
    first = [store.sides("r", ["x", "y"], i) for i in range(400)]
    left_x = sum(left == "x" for left, _ in first)
    assert 140 < left_x < 260  # a fair coin: outside this range with probability < 1e-9
    assert [store.sides("r", ["y", "x"], i) for i in range(400)] == first  # kept, any pair order
    assert all(sorted(s) == ["x", "y"] for s in first)


def test_each_rater_has_a_stable_order_of_their_own():
    prompts = list(range(50))
    assert rater_order("ann", "a|b", prompts) == rater_order("ann", "a|b", reversed(prompts))
    assert sorted(rater_order("ann", "a|b", prompts)) == prompts
    assert rater_order("ann", "a|b", prompts) != rater_order("bob", "a|b", prompts)


def test_vote_store_refuses_a_vote_for_a_prompt_never_shown(tmp_path):
    store = VoteStore(tmp_path / "v.sqlite")
    with pytest.raises(VoteConflictError, match="never shown"):
        store.record(vote_id="abcdefgh", rater="r", pair=["x", "y"], prompt_index=0, prompt="p",
                     category="c", quality="A", alignment="A")  # fmt: skip
