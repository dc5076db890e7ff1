"""Error types for problems caused by user input.

Library code raises these (never ``assert``) when an argument, a config or a file is
wrong. Each message names the argument, the value received, what is allowed and, where
there is one, the fix. The CLI prints any :class:`OpenImagenError` as one line and exits
non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any


class OpenImagenError(Exception):
    """Base class for every error caused by the user's input, config or files."""


class InvalidArgumentError(OpenImagenError, ValueError):
    """An argument or config field has a value that is not allowed."""

    def __init__(self, name: str, value: Any, allowed: str, fix: str | None = None):
        self.name, self.value, self.allowed = name, value, allowed
        message = f"{name}={_short_repr(value)} is not valid: expected {allowed}."
        if fix:
            message += f" {fix}"
        super().__init__(message)


class InvalidTypeError(OpenImagenError, TypeError):
    """An argument has the wrong type."""

    def __init__(self, name: str, value: Any, expected: str):
        self.name, self.value = name, value
        super().__init__(
            f"{name} must be {expected}, got {type(value).__name__} ({_short_repr(value)})."
        )


class ShapeError(InvalidArgumentError):
    """A tensor argument has the wrong shape."""

    def __init__(self, name: str, shape: tuple[int, ...], expected: str):
        super().__init__(name + ".shape", tuple(shape), expected)


class ConfigError(OpenImagenError, ValueError):
    """A config file or dataclass is malformed (unknown key, wrong type, inconsistent fields)."""


class ModelDirectoryError(OpenImagenError):
    """A model directory or checkpoint is missing, unreadable, foreign or inconsistent."""


class MissingDependencyError(OpenImagenError, ImportError):
    """An optional package a command needs cannot be imported; the message says how to get it."""


class NonFiniteOutputError(OpenImagenError, ArithmeticError):
    """A model produced NaN or infinite values: damaged weights or unstable settings."""


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
