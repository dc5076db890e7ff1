"""The two caption languages of the shapes world: training and paraphrase.

Data only (words and constructions, see :mod:`.language` for what each field means); the
paraphrase language shares no phrase and no construction with the training one, which
``ShapesConfig.validate()`` checks with :func:`~.language.language_overlap`.
"""

from __future__ import annotations

from openimagen.data.shapes.language import CaptionLanguage

# Five words per colour in training, so that the U-Net has to read colour out of the text
# encoder's meaning rather than one token. The paraphrase colours are dictionary colour
# names never seen in training and containing no training word (no "blood-red"); they were
# chosen as words, not by how well any model reads them (benchmarks/colour_probe.py).
_TRAIN_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "scarlet", "ruby", "cherry", "tomato-red"),
    "green": ("green", "emerald", "lime", "jade", "grass-green"),
    "blue": ("blue", "navy", "sapphire", "azure", "sky-blue"),
    "yellow": ("yellow", "golden", "lemon", "canary", "sunflower-yellow"),
    "purple": ("purple", "violet", "lavender", "plum", "grape"),
    "orange": ("orange", "tangerine", "amber", "pumpkin", "apricot"),
    "circle": ("circle", "disk", "dot", "ball"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "pyramid", "triangular shape"),
    "small": ("small", "little", "tiny"),
    "large": ("large", "big", "huge"),
    "left_of": ("to the left of", "left of", "on the left of"),
    "right_of": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "underneath"),
    "2": ("two", "2"),
    "3": ("three", "3"),
    "4": ("four", "4"),
    "black": ("black", "dark"),
    "white": ("white", "bright white"),
    "gray": ("gray", "grey"),
}
_PARAPHRASE_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("crimson", "vermilion", "carmine"),
    "green": ("viridian", "verdant", "moss"),
    "blue": ("cobalt", "ultramarine", "cerulean"),
    "yellow": ("mustard", "saffron", "citrine"),
    "purple": ("lilac", "mauve", "amethyst"),
    "orange": ("persimmon", "carrot", "copper"),
    "circle": ("disc", "orb", "sphere"),
    "square": ("tile", "cube"),
    "triangle": ("wedge", "arrowhead"),
    "small": ("miniature", "petite"),
    "large": ("giant", "enormous"),
    "left_of": ("further left than", "on the left-hand side of"),
    "right_of": ("further right than", "on the right-hand side of"),
    "above": ("higher up than", "higher than"),
    "below": ("lower down than", "beneath"),
    "2": ("a pair of",),
    "3": ("a trio of",),
    "4": ("a quartet of",),
    "black": ("ebony", "inky"),
    "white": ("snowy", "ivory"),
    "gray": ("slate", "ashen"),
}

TRAIN_LANGUAGE = CaptionLanguage(
    words=_TRAIN_WORDS,
    object_phrases=(
        "{det} {size} {color} {shape}",
        "{det} {size} {shape} that {be} {color}",
        "{det} {size} {shape}, coloured {color},",
        "{det} {size} {shape}, colored {color},",
    ),
    sized_object_phrases=("{det} {color} {shape} that {be} {size}",),
    relation_clauses=(
        "{x} {rel} {y}",
        "{y} with {x} {rel} {it_y}",
    ),
    scene_templates=(
        "{objects}",
        "{objects}",
        "a picture of {objects}",
        "an image of {objects}",
        "please draw {objects}",
        "draw {objects}",
        "just {objects}",
        "{objects} and nothing else",
        "{objects}, nothing else",
        "show {objects}",
    ),
    background_templates=(
        "{scene} on a {background} background",
        "{scene} against a {background} background",
        "a {background} background with {scene}",
        "{scene}; the background is {background}",
    ),
    list_joiners=(" and ", " and ", " as well as "),
    sentence_clauses=(
        "{x} {be_x} {rel} {y}",
        "{rel} {y} there {be_x} {x}",
    ),
    existential_clauses=("there {be_x} also {x}",),
    sentence_templates=("{objects}", "in the picture, {objects}", "in this image {objects}"),
    sentence_background_templates=(
        "{scene}; the background is {background}",
        "{scene}, all on a {background} background",
    ),
)

PARAPHRASE_LANGUAGE = CaptionLanguage(
    words=_PARAPHRASE_WORDS,
    object_phrases=(
        "{det} {size} {shape} painted {color}",
        "{det} {size} {shape} in {color}",
        "{det} {size} {shape} whose colour is {color}",
    ),
    sized_object_phrases=("{det} {color} {shape} of {size} size",),
    relation_clauses=(
        "{x} positioned {rel} {y}",
        "{x} located {rel} {y}",
        "{y}, and {x} {rel} {it_y}",
    ),
    scene_templates=(
        "could you render {objects}",
        "I would like to see {objects}",
        "a rendering that contains {objects}",
        "here we see {objects}",
        "{objects} with no other objects",
    ),
    background_templates=(
        "{scene} over a {background} canvas",
        "{scene}, set against a {background} backdrop",
        "a {background} canvas holding {scene}",
    ),
    list_joiners=(" together with ", " alongside "),
    sentence_clauses=(
        "{x} {be_x} situated {rel} {y}",
        "{rel} {y} one finds {x}",
    ),
    existential_clauses=("{x} {be_x} present as well",),
    sentence_templates=("in this rendering, {objects}", "{objects}, and that is all"),
    sentence_background_templates=("{scene}; the backdrop is {background}",),
)

__all__ = ["PARAPHRASE_LANGUAGE", "TRAIN_LANGUAGE"]
