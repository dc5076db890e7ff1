"""argparse value types shared by the command lines (``cli.py``, ``serve/cli.py``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def ranged(kind: type, low: float | None, high: float | None, what: str) -> Callable[[str], float]:
    """An argparse ``type``: ``kind(text)`` within [low, high]; errors say ``what`` is allowed."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is out of range: expected {what}")
        return value

    return parse
