"""The caption language: what a caption says is what the spec holds, in varied English,
and the paraphrase language is disjoint from the training one."""

from __future__ import annotations

import re

import numpy as np
import pytest

from openimagen.config import ConfigError
from openimagen.data.shapes import (
    INVERSE_RELATION,
    PARAPHRASE_LANGUAGE,
    RELATIONS,
    SHAPES,
    TRAIN_LANGUAGE,
    ShapeObject,
    ShapesConfig,
    ShapeSpec,
    ShapesWorld,
    describe,
    language_overlap,
)
from openimagen.data.shapes.language import ATTRIBUTE_CONCEPTS, FUNCTION_WORDS, phrase_words

COLORS = ("red", "green", "blue", "yellow", "purple", "orange")


def _has(phrase: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", text) is not None


def _first(text: str, words: dict[str, tuple[str, ...]], keys) -> list[tuple[int, str]]:
    """(position, concept) of every mention of a ``keys`` concept, in reading order."""
    found = []
    for key in keys:
        for phrase in words[key]:
            for m in re.finditer(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", text):
                found.append((m.start(), key))
    return sorted(found)


# -- disjointness ----------------------------------------------------------------------------
def test_language_training_and_paraphrase_share_nothing():
    assert language_overlap(TRAIN_LANGUAGE, PARAPHRASE_LANGUAGE) == []
    # the check finds each kind of leak
    leaky = PARAPHRASE_LANGUAGE.replace(
        words={**PARAPHRASE_LANGUAGE.words, "red": ("crimson", "scarlet")},
        relation_clauses=(*PARAPHRASE_LANGUAGE.relation_clauses, "{x} {rel} {y}"),
    )
    problems = " | ".join(language_overlap(TRAIN_LANGUAGE, leaky))
    assert "words.red: ['scarlet']" in problems and "relation_clauses" in problems
    # a new phrase built from a training word is a leak for attributes ("dark" is black's)
    dark = PARAPHRASE_LANGUAGE.replace(
        words={**PARAPHRASE_LANGUAGE.words, "blue": ("dark cobalt",)}
    )
    assert any("dark" in p for p in language_overlap(TRAIN_LANGUAGE, dark))
    with pytest.raises(ConfigError, match="paraphrase_language"):
        ShapesConfig(paraphrase_language=leaky)


def test_language_captions_of_each_split_use_only_their_own_attribute_words():
    train_attr = {k: TRAIN_LANGUAGE.words[k] for k in ATTRIBUTE_CONCEPTS}
    para_attr = {k: PARAPHRASE_LANGUAGE.words[k] for k in ATTRIBUTE_CONCEPTS}
    train_words = phrase_words([p for v in train_attr.values() for p in v]) - FUNCTION_WORDS
    para_words = phrase_words([p for v in para_attr.values() for p in v]) - FUNCTION_WORDS
    for split, forbidden in (("train", para_words), ("paraphrase", train_words)):
        world = ShapesWorld(None, 32, split, seed=4)
        for i in range(400):
            text = world.sample(i)[0].prompt.lower()
            words = set(re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text))
            assert not words & forbidden, (split, text, words & forbidden)


def test_language_is_varied_in_training():
    texts = [ShapesWorld(None, 32, "train", seed=0).sample(i)[0].prompt for i in range(1500)]
    distinct = len(set(texts))
    assert distinct > 1450  # almost every caption is new
    joined = "\n".join(texts)
    for construction in (r"that (is|are) \w+", r", colou?red \w+", r"there (is|are) ",
                         r" with .* (it|them)\b", r"please draw ", r"nothing else",
                         r"\b[234] ", r"\b(two|three|four) "):  # fmt: skip
        assert re.search(construction, joined), construction
    used = {c: {w for w in TRAIN_LANGUAGE.words[c] if _has(w, joined)} for c in COLORS}
    assert all(len(v) == 5 for v in used.values()), used  # every colour word in use


# -- meaning ---------------------------------------------------------------------------------
def _said_relation(text: str, language) -> tuple[str, str, str]:
    """(subject colour, relation, object colour) that a two-object caption states."""
    colors = [c for _, c in _first(text, language.words, COLORS)]
    assert len(colors) == 2, text
    first, second = colors
    # the longest phrase at the first relation position ("to the left of", not "left of")
    rels = _first(text, language.words, RELATIONS)
    start = rels[0][0]
    rel, phrase = max(
        ((key, p) for key in RELATIONS for p in language.words[key] if text.startswith(p, start)),
        key=lambda kp: len(kp[1]),
    )
    after = text[start + len(phrase) :]
    first_colour = _first(text, language.words, COLORS)[0][0]
    if re.match(r" (it|them)\b", after) or start < first_colour:
        # "{y} with {x} {rel} it", "{y}, and {x} {rel} it"; "{rel} {y} there is {x}",
        # "{rel} {y} one finds {x}"
        return second, rel, first
    return first, rel, second


@pytest.mark.parametrize("split", ["train", "paraphrase"])
@pytest.mark.parametrize("relation", RELATIONS)
def test_language_relation_captions_say_the_spec_in_both_clause_orders(split, relation):
    language = TRAIN_LANGUAGE if split == "train" else PARAPHRASE_LANGUAGE
    spec = ShapeSpec((ShapeObject("circle", "red"), ShapeObject("square", "blue")),
                     ((0, relation, 1),))  # fmt: skip
    rng = np.random.default_rng(1)
    subjects = set()
    for _ in range(60):
        text = describe(spec, rng, language)
        subject, rel, obj = _said_relation(text, language)
        assert (subject, rel, obj) in {("red", relation, "blue"),
                                       ("blue", INVERSE_RELATION[relation], "red")}, text  # fmt: skip
        subjects.add(subject)
    assert subjects == {"red", "blue"}  # both objects appear as the subject


def test_language_groups_in_relations_are_counted_and_agree():
    spec = ShapeSpec(
        (ShapeObject("circle", "red"),) * 2 + (ShapeObject("square", "blue"),),
        ((0, "above", 2), (1, "above", 2)),
    )
    rng = np.random.default_rng(2)
    for _ in range(80):
        text = describe(spec, rng, TRAIN_LANGUAGE)
        assert re.search(r"\b(two|2) ", text), text
        assert len(_first(text, TRAIN_LANGUAGE.words, ("blue",))) == 1, text
        subject, rel, obj = _said_relation(text, TRAIN_LANGUAGE)
        assert (subject, rel, obj) in {("red", "above", "blue"), ("blue", "below", "red")}, text
        # agreement: "there are two ...", "... with two ... above it", "... with a ... below them"
        if " there " in text:
            assert ("there are" in text) == (subject == "red"), text
        if re.search(r" (it|them)\b", text):
            assert ("them" in text) == (obj == "red"), text
        plural = "(circles|disks|dots|balls)" if subject == "red" else "(squares|boxes|blocks)"
        assert re.search(plural, text) or subject == "blue", text


def test_language_counts_and_repeated_mentions():
    three = ShapeSpec((ShapeObject("square", "blue"),) * 3)
    rng = np.random.default_rng(0)
    for _ in range(30):
        text = describe(three, rng, TRAIN_LANGUAGE)
        assert re.search(r"\b(three|3) ", text) and re.search(r"(squares|boxes|blocks)", text)
    # three objects, two relations: the object named twice is named with the same words
    spec = ShapeSpec(
        (ShapeObject("circle", "red"), ShapeObject("square", "blue"),
         ShapeObject("triangle", "green")),
        ((0, "left_of", 1), (2, "above", 1)),
    )  # fmt: skip
    for _ in range(30):
        text = describe(spec, rng, TRAIN_LANGUAGE)
        blues = [m for _, m in _first(text, TRAIN_LANGUAGE.words, ("blue",))]
        assert len(blues) == 2, text
        phrases = re.findall(r"\bthe [\w -]*?(square|box|block)", text)
        assert phrases, text  # the second mention is definite


def test_language_sizes_and_backgrounds_are_said():
    spec = ShapeSpec((ShapeObject("triangle", "purple", "small"),), background="white")
    rng = np.random.default_rng(3)
    for language in (TRAIN_LANGUAGE, PARAPHRASE_LANGUAGE):
        for _ in range(30):
            text = describe(spec, rng, language)
            for key in ("purple", "small", "white", "triangle"):
                assert any(_has(w, text) for w in language.words[key]), (key, text)
            assert not re.search(r"\ba [aeiou]", text), text  # "an ivory canvas"
            assert "  " not in text and " ," not in text and not text.endswith(","), text


def test_language_validates_its_templates():
    with pytest.raises(ConfigError, match="unknown slots"):
        TRAIN_LANGUAGE.replace(scene_templates=("{objects} on {backdrop}",))
    with pytest.raises(ConfigError, match="needs the slots"):
        TRAIN_LANGUAGE.replace(relation_clauses=("{x} next to it",))
    with pytest.raises(ConfigError, match="no phrases for"):
        TRAIN_LANGUAGE.replace(words={k: v for k, v in TRAIN_LANGUAGE.words.items() if k != "2"})
    assert set(SHAPES) <= set(TRAIN_LANGUAGE.words)


NP_FRAMES = ("please draw", "draw ", "show ", "just ", "a picture of", "an image of",
             "nothing else", "could you render", "I would like to see",
             "a rendering that contains", "here we see", "with no other objects")  # fmt: skip
SENTENCE_MARKS = re.compile(
    r" there (is|are) | one finds | situated | (is|are) (on the|to the|left|right|above|below|"
    r"over|under|underneath) "
)


@pytest.mark.parametrize("split", ["train", "paraphrase"])
def test_language_sentences_and_frames_do_not_mix(split):
    # "please draw a red circle is above ..." and "a grey background with please draw ..."
    # are not English; sentence captions take their own framing
    world = ShapesWorld(None, 32, split, seed=6)
    sentences = 0
    for i in range(1500):
        text = world.sample(i)[0].prompt
        if SENTENCE_MARKS.search(text):
            sentences += 1
            assert not any(f in text for f in NP_FRAMES), text
        assert not re.search(r"(background with|canvas holding) (please|draw|show|just|a picture"
                             r"|an image|could|I would|a rendering|here we see)", text), text  # fmt: skip
    assert sentences > 100  # sentence captions do occur
