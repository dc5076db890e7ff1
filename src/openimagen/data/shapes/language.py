"""The caption language of the shapes world: varied English for a scene spec.

A :class:`CaptionLanguage` is data (words and constructions), so a split's language is part
of its config and round-trips through JSON. :func:`describe` turns a spec into one caption:

* words: several per colour, shape, size, number, relation and background;
* object phrases: attribute orders ("a red circle", "a circle that is red", "a circle,
  coloured red", "a red circle that is small"), plurals with counts as words or digits;
* relation clauses: both clause orders ("X above Y", "above Y there is X", "Y with X over
  it"), for single objects and for counted groups ("two red circles above a blue square");
* scenes: several clauses joined, optional framing ("please draw ...", "just ...",
  "... and nothing else") and the background stated several ways.

The training and paraphrase languages (:data:`TRAIN_LANGUAGE`, :data:`PARAPHRASE_LANGUAGE`)
share no phrase for any concept and no construction; :func:`language_overlap` checks that,
down to single words for the object attributes (colour, shape, size, background).

Slots in the templates: ``{det}`` (article, count or "the"), ``{size}`` (dropped with its
space when the spec gives none), ``{color}``, ``{shape}`` (plural for a group), ``{be}``
(is / are), and in relation clauses ``{x}`` / ``{y}`` (the two noun phrases), ``{rel}``,
``{be_x}``, ``{it_y}`` (it / them).
"""

from __future__ import annotations

import dataclasses
import re
import string

import numpy as np

from openimagen.config import Config
from openimagen.data.shapes.spec import (
    BACKGROUND_COLORS,
    INVERSE_RELATION,
    OBJECT_COLORS,
    RELATIONS,
    SHAPES,
    SIZES,
    ShapeObject,
    ShapeSpec,
)
from openimagen.errors import ConfigError

COUNT_KEYS = ("2", "3", "4")
#: every concept a language must have words for
CONCEPTS = (*OBJECT_COLORS, *SHAPES, *SIZES, *RELATIONS, *COUNT_KEYS, *BACKGROUND_COLORS)
#: concepts whose paraphrase words must be new word by word, not only phrase by phrase
ATTRIBUTE_CONCEPTS = (*OBJECT_COLORS, *SHAPES, *SIZES, *BACKGROUND_COLORS)
#: words any two languages may share (articles, pronouns, prepositions, "is"/"are")
FUNCTION_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "is",
        "are",
        "it",
        "them",
        "there",
        "of",
        "to",
        "on",
        "in",
        "with",
        "by",
        "its",
        "that",
        "this",
    ]
)
_SLOTS = {
    "object_phrases": {"det", "size", "color", "shape", "be"},
    "sized_object_phrases": {"det", "size", "color", "shape", "be"},
    "relation_clauses": {"x", "y", "rel", "be_x", "it_y"},
    "scene_templates": {"objects"},
    "background_templates": {"scene", "background"},
    "list_joiners": set(),
    "sentence_clauses": {"x", "y", "rel", "be_x", "it_y"},
    "existential_clauses": {"x", "be_x"},
    "sentence_templates": {"objects"},
    "sentence_background_templates": {"scene", "background"},
}
# optional constructions: a language may have no sentence captions
_OPTIONAL = {"sentence_clauses", "existential_clauses", "sentence_templates",
             "sentence_background_templates"}  # fmt: skip
#: chance that a caption of a scene with relations is a sentence ("X is above Y", "above Y
#: there is X") rather than a noun phrase in a frame ("please draw X above Y")
P_SENTENCE = 0.4


@dataclasses.dataclass(frozen=True)
class CaptionLanguage(Config):
    """Words and constructions of one split's captions (see the module docstring)."""

    # concept -> phrases, e.g. "red" -> ("red", "scarlet"); counts under "2", "3", "4"
    words: dict[str, tuple[str, ...]]
    # an object or a group; {size} may be absent from the spec
    object_phrases: tuple[str, ...]
    # used only when the spec states a size (the size comes after the noun)
    sized_object_phrases: tuple[str, ...]
    # subject {x} in relation {rel} to {y}
    relation_clauses: tuple[str, ...]
    # framing around the joined clauses {objects}
    scene_templates: tuple[str, ...]
    # how a stated background is said around the objects ({scene}), before the framing
    background_templates: tuple[str, ...]
    # joins the last clause to the others ("A, B and C")
    list_joiners: tuple[str, ...]
    # Sentence captions (scenes with relations, with chance P_SENTENCE): relation clauses
    # that are sentences, how an object outside every relation is added to them, and their
    # own framing and background phrasing (a sentence cannot follow "please draw").
    sentence_clauses: tuple[str, ...] = ()
    existential_clauses: tuple[str, ...] = ()
    sentence_templates: tuple[str, ...] = ()
    sentence_background_templates: tuple[str, ...] = ()

    def validate(self) -> None:
        missing = [k for k in CONCEPTS if not self.words.get(k)]
        if missing:
            raise ConfigError(f"words: no phrases for {missing}")
        unknown = sorted(set(self.words) - set(CONCEPTS))
        if unknown:
            raise ConfigError(f"words: unknown concepts {unknown}; allowed: {list(CONCEPTS)}")
        for name, allowed in _SLOTS.items():
            templates = getattr(self, name)
            if not templates and name not in _OPTIONAL:
                raise ConfigError(f"{name}: needs at least one entry")
            for template in templates:
                used = template_slots(template)
                if used - allowed:
                    raise ConfigError(
                        f"{name}: {template!r} uses unknown slots {sorted(used - allowed)}; "
                        f"allowed: {sorted(allowed)}"
                    )
        for name, required in (
            ("object_phrases", {"det", "color", "shape"}),
            ("sized_object_phrases", {"det", "size", "color", "shape"}),
            ("relation_clauses", {"x", "y", "rel"}),
            ("scene_templates", {"objects"}),
            ("background_templates", {"scene", "background"}),
            ("sentence_clauses", {"x", "y", "rel"}),
            ("existential_clauses", {"x"}),
            ("sentence_templates", {"objects"}),
            ("sentence_background_templates", {"scene", "background"}),
        ):
            for template in getattr(self, name):
                if not required <= template_slots(template):
                    raise ConfigError(f"{name}: {template!r} needs the slots {sorted(required)}")
        sentence = [bool(getattr(self, n)) for n in sorted(_OPTIONAL)]
        if any(sentence) and not all(sentence):
            raise ConfigError(f"{', '.join(sorted(_OPTIONAL))}: give all of them or none")


def template_slots(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def template_words(template: str) -> set[str]:
    """The literal words of a template (slots removed), lower case."""
    literal = "".join(text for text, _, _, _ in string.Formatter().parse(template))
    return set(re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", literal.lower()))


def phrase_words(phrases: tuple[str, ...] | list[str]) -> set[str]:
    return {w for p in phrases for w in re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", p.lower())}


def language_overlap(train: CaptionLanguage, other: CaptionLanguage) -> list[str]:
    """What ``other`` shares with ``train``; empty when the two are disjoint.

    Disjoint means: no phrase shared for any concept; no construction shared (object
    phrases, relation clauses, scene and background templates, joiners); and no word of an
    attribute phrase of ``other`` (colour, shape, size, background) anywhere in ``train``,
    its templates included, apart from :data:`FUNCTION_WORDS`.
    """
    problems = []
    for key in CONCEPTS:
        shared = set(train.words[key]) & set(other.words[key])
        if shared:
            problems.append(f"words.{key}: {sorted(shared)} also in training")
    for name in _SLOTS:
        shared = set(getattr(train, name)) & set(getattr(other, name))
        if shared:
            problems.append(f"{name}: {sorted(shared)} also in training")
    train_words = phrase_words([p for k in CONCEPTS for p in train.words[k]])
    for name in _SLOTS:
        for template in getattr(train, name):
            train_words |= template_words(template)
    for key in ATTRIBUTE_CONCEPTS:
        shared = (phrase_words(other.words[key]) & train_words) - FUNCTION_WORDS
        if shared:
            problems.append(f"words.{key}: the words {sorted(shared)} occur in training")
    return problems


# -- describing a spec -------------------------------------------------------------------------
def plural(noun: str) -> str:
    head, _, last = noun.rpartition(" ")
    last += "es" if last.endswith(("x", "s", "sh", "ch")) else "s"
    return f"{head} {last}" if head else last


def article(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def _groups(spec: ShapeSpec) -> list[list[int]]:
    """Object indices grouped by identical object, in order of first appearance."""
    groups: dict[ShapeObject, list[int]] = {}
    for i, obj in enumerate(spec.objects):
        groups.setdefault(obj, []).append(i)
    return list(groups.values())


def _group_relations(spec: ShapeSpec, groups: list[list[int]]) -> list[tuple[int, str, int]]:
    """Relations between groups (group indices) that hold for every member pair.

    A spec's relations are between objects; a caption speaks of groups ("two red circles
    above a blue square" is 0 above 2 and 1 above 2), so each group-level relation must
    cover all member pairs. Relations that do not (one of two identical circles above a
    square) cannot be said without naming which one, and stay object-level.
    """
    owner = {i: g for g, members in enumerate(groups) for i in members}
    said: list[tuple[int, str, int]] = []
    for a, rel, b in spec.relations:
        key = (owner[a], rel, owner[b])
        if key not in said:
            said.append(key)
    rels = set(spec.relations)
    for ga, rel, gb in said:
        for a in groups[ga]:
            for b in groups[gb]:
                if (a, rel, b) not in rels:
                    raise ValueError(f"relation {rel} does not hold between whole groups")
    return said


def _noun_phrases(
    spec: ShapeSpec, groups: list[list[int]], language: CaptionLanguage, pick
) -> list[tuple[str, str]]:
    """(first mention, later mention) per group, drawn once, so a second mention repeats
    the first one's words ("a scarlet disk ... the scarlet disk")."""
    phrases: list[tuple[str, str]] = []
    for members in groups:
        obj, n = spec.objects[members[0]], len(members)
        templates = language.object_phrases
        if obj.size is not None:
            templates = templates + language.sized_object_phrases
        shape = pick(language.words[obj.shape])
        fields = {
            "size": pick(language.words[obj.size]) if obj.size else "",
            "color": pick(language.words[obj.color]),
            "shape": shape if n == 1 else plural(shape),
            "be": "is" if n == 1 else "are",
        }
        body = re.sub(r"\s+", " ", _fill(pick(templates), det="", **fields)).strip()
        first = article(body) if n == 1 else f"{pick(language.words[str(n)])} {body}"
        phrases.append((first, f"the {body}"))
    return phrases


def describe(spec: ShapeSpec, rng: np.random.Generator, language: CaptionLanguage) -> str:
    """One caption of ``spec`` in ``language``; every random choice comes from ``rng``."""

    def pick(options: tuple[str, ...] | list[str]) -> str:
        return options[int(rng.integers(len(options)))]

    groups = _groups(spec)
    try:
        relations = _group_relations(spec, groups)
    except ValueError:  # not sayable group by group: name each object on its own
        groups = [[i] for i in range(len(spec.objects))]
        relations = list(spec.relations)
    phrases = _noun_phrases(spec, groups, language, pick)
    mentioned: set[int] = set()

    def refer(g: int) -> str:
        first, later = phrases[g]
        text = later if g in mentioned else first
        mentioned.add(g)
        return text

    sentence = bool(relations and language.sentence_clauses) and rng.random() < P_SENTENCE
    clauses = []
    for ga, rel, gb in relations:
        if rng.random() < 0.5:  # "B right of A" says the same as "A left of B"
            ga, rel, gb = gb, INVERSE_RELATION[rel], ga
        template = pick(language.sentence_clauses if sentence else language.relation_clauses)
        # refer in reading order, so the first mention gets the article
        order = sorted(("x", "y"), key=lambda s: template.index("{" + s + "}"))
        ref = {}
        for slot in order:
            ref[slot] = refer(ga if slot == "x" else gb)
        clauses.append(
            _fill(
                template,
                x=ref["x"],
                y=ref["y"],
                rel=pick(language.words[rel]),
                be_x="is" if len(groups[ga]) == 1 else "are",
                it_y="it" if len(groups[gb]) == 1 else "them",
            )
        )
    for g in range(len(groups)):
        if g not in mentioned:
            if sentence:  # "..., and there is also a green triangle"
                be = "is" if len(groups[g]) == 1 else "are"
                clauses.append(_fill(pick(language.existential_clauses), x=refer(g), be_x=be))
            else:
                clauses.append(refer(g))
    if len(clauses) == 1:
        objects = clauses[0]
    else:
        objects = ", ".join(clauses[:-1]) + pick(language.list_joiners) + clauses[-1]
    # the background is said around the objects, then the whole is framed: "please draw a
    # grey background with X", never "a grey background with please draw X"
    if spec.background is not None:
        background = pick(language.words[spec.background])
        templates = (
            language.sentence_background_templates if sentence else language.background_templates
        )
        objects = _fill(pick(templates), scene=objects, background=background)
    frames = language.sentence_templates if sentence else language.scene_templates
    scene = _fill(pick(frames), objects=objects)
    return _tidy(scene)


def _fill(template: str, **fields: str) -> str:
    return template.format(**{k: fields.get(k, "") for k in template_slots(template)})


def _tidy(text: str) -> str:
    """Collapse the spaces and commas that empty slots and nested phrases leave behind."""
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\ba (?=[aeiou])", "an ", text)  # "a ivory canvas" -> "an ivory canvas"
    text = re.sub(r"\s+([,;])", r"\1", text)
    text = re.sub(r",+", ",", text)
    text = re.sub(r",([;]|$)", r"\1", text)
    text = re.sub(r",( and| as well as| together with| alongside)\b", r"\1", text)
    return text.strip(" ,")
