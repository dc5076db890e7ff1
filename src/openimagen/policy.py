"""An optional prompt policy: a block list of words and phrases, checked before generation.

A block-list file is UTF-8 text with one entry per line; blank lines and lines starting with
``#`` are ignored. An entry is a word or a phrase (words separated by whitespace). A prompt is
refused when it contains an entry as whole words, case-insensitively: ``gore`` blocks
"Gore!" and "some gore here" but not "gorent"; ``red circle`` blocks "a Red   circle" (any
whitespace between the words) but not "red circles".

This is a simple operator tool (keep a server from drawing terms it does not want to), not a
safety classifier: it does not catch misspellings, synonyms or other languages.

The CLI (``openimagen generate --policy FILE``) calls :func:`enforce_policy`; the server
(``openimagen serve --policy FILE``) loads the file once and answers a refused prompt with a
400 ``content_policy_violation`` carrying the same message.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from openimagen.errors import ConfigError, InvalidArgumentError, OpenImagenError


def _normalize(text: str) -> str:
    # NFKC folds look-alike forms (full-width letters, ligatures) before matching;
    # casefold is the Unicode-correct lower-casing.
    return unicodedata.normalize("NFKC", text).casefold()


def _refusal(term: str) -> str:
    return (
        f"the prompt was refused by the prompt policy: it contains the blocked term {term!r}. "
        "Rephrase the prompt without it."
    )


class PromptRefusedError(OpenImagenError, ValueError):
    """A prompt contains a term of the prompt policy's block list."""

    def __init__(self, reason: str, term: str):
        super().__init__(reason)
        self.term = term


class PromptPolicy:
    """A compiled block list; ``check(prompt)`` returns None (allowed) or a refusal reason."""

    def __init__(self, blocked: Iterable[str]):
        entries = []
        for entry in blocked:
            if not isinstance(entry, str):
                raise InvalidArgumentError("blocked", entry, "strings (words or phrases)")
            words = _normalize(entry).split()
            if words:
                entries.append(" ".join(words))
        self.blocked: tuple[str, ...] = tuple(dict.fromkeys(entries))  # unique, in order
        self._pattern = None
        if self.blocked:
            # Longest first, so a phrase wins over a word it contains in the reported reason.
            alternatives = sorted(self.blocked, key=len, reverse=True)
            body = "|".join(r"\s+".join(re.escape(w) for w in e.split()) for e in alternatives)
            # (?<!\w) / (?!\w): whole words, also for entries that start or end with a symbol.
            self._pattern = re.compile(rf"(?<!\w)(?:{body})(?!\w)")

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> PromptPolicy:
        """Read a block-list file (one word or phrase per line, ``#`` comments)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"policy file {path}: cannot read it ({exc.strerror or exc}); "
                "pass an existing UTF-8 text file with one blocked word or phrase per line"
            ) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"policy file {path}: not UTF-8 text ({exc.reason})") from exc
        lines = [line.strip() for line in text.splitlines()]
        return cls(line for line in lines if line and not line.startswith("#"))

    def check(self, prompt: str) -> str | None:
        """None if ``prompt`` is allowed, else a one-sentence reason naming the blocked term."""
        term = self.blocked_term(prompt)
        return None if term is None else _refusal(term)

    def blocked_term(self, prompt: str) -> str | None:
        """The first blocked term found in ``prompt`` (normalized), or None."""
        if self._pattern is None:
            return None
        match = self._pattern.search(_normalize(prompt))
        return None if match is None else " ".join(match.group(0).split())

    def enforce(self, prompt: str) -> None:
        """Raise :class:`PromptRefusedError` if ``prompt`` contains a blocked term."""
        term = self.blocked_term(prompt)
        if term is not None:
            raise PromptRefusedError(_refusal(term), term)

    def __len__(self) -> int:
        return len(self.blocked)

    def __repr__(self) -> str:
        return f"PromptPolicy({len(self.blocked)} blocked terms)"


def enforce_policy(prompt: str, policy_file: str | os.PathLike | None) -> None:
    """Refuse ``prompt`` if the block-list file ``policy_file`` names a term in it.

    ``policy_file`` None means no policy (always allowed). Raises :class:`ConfigError` for a
    missing or unreadable file and :class:`PromptRefusedError` (an ``OpenImagenError``) for a
    refused prompt, whose message names the term; the CLI prints either as one line.
    """
    if policy_file is not None:
        PromptPolicy.from_file(policy_file).enforce(prompt)


__all__ = ["PromptPolicy", "PromptRefusedError", "enforce_policy"]
