"""Prompt policy: whole-word, case-insensitive block list from a file."""

from __future__ import annotations

import pytest

from openimagen.errors import ConfigError
from openimagen.policy import PromptPolicy


@pytest.fixture
def policy(tmp_path):
    path = tmp_path / "blocked.txt"
    path.write_text("# comment line\n\nGore\n  red   circle \nc++\n", encoding="utf-8")
    return PromptPolicy.from_file(path)


def test_file_entries_comments_and_blank_lines(policy):
    assert policy.blocked == ("gore", "red circle", "c++")
    assert len(policy) == 3


@pytest.mark.parametrize(
    "prompt,term",
    [
        ("some GORE here", "gore"),
        ("Gore!", "gore"),
        ("(gore)", "gore"),
        ("a Red \t  Circle above a square", "red circle"),
        ("written in C++ code", "c++"),
        ("full-width ＧＯＲＥ", "gore"),
    ],
)
def test_blocked_prompts_are_refused_naming_the_term(policy, prompt, term):
    reason = policy.check(prompt)
    assert reason is not None
    assert repr(term) in reason and "policy" in reason


@pytest.mark.parametrize(
    "prompt", ["gorent is a made-up word", "red circles", "a red square and a circle", "cpp", "c+"]
)
def test_allowed_prompts_pass(policy, prompt):
    assert policy.check(prompt) is None


def test_empty_policy_allows_everything():
    assert PromptPolicy([]).check("anything at all") is None
    assert PromptPolicy(["   "]).check("anything") is None


def test_missing_file_is_a_clear_config_error(tmp_path):
    with pytest.raises(ConfigError, match="missing.txt"):
        PromptPolicy.from_file(tmp_path / "missing.txt")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf\xe9\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        PromptPolicy.from_file(bad)


def test_enforce_policy_raises_a_project_error_naming_the_term(tmp_path):
    from openimagen.errors import OpenImagenError
    from openimagen.policy import PromptRefusedError, enforce_policy

    path = tmp_path / "blocked.txt"
    path.write_text("blue square\n", encoding="utf-8")
    enforce_policy("a red circle", path)  # allowed: returns quietly
    enforce_policy("a blue square", None)  # no policy file: everything allowed
    with pytest.raises(PromptRefusedError, match="'blue square'") as refused:
        enforce_policy("A BLUE square", path)
    assert isinstance(refused.value, OpenImagenError) and refused.value.term == "blue square"
    with pytest.raises(ConfigError, match="nope.txt"):
        enforce_policy("a red circle", tmp_path / "nope.txt")
